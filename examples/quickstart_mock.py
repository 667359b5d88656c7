"""Read one card through AsyncCVClient against a mocked service (respx): no account needed."""

import anyio
import respx

from cvekyc_async import AsyncCVClient, ImageSource

ANSWER = (
    b'{"data": {"type": "chip_id_card_front", "valid": "True", "invalidMessage": "",'
    b' "info": {"id": "001099012345", "name": "NGUYEN VAN MAU", "dob": "15/04/1999",'
    b' "id_confidence": "0.99"}}, "errorCode": "0", "errorMessage": ""}'
)
FAKE_JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64


async def main() -> None:
    with respx.mock(base_url="https://cloud.computervision.com.vn") as mock:
        mock.post("/api/v2/ekyc/card").respond(200, content=ANSWER)
        async with AsyncCVClient(api_key="demo", api_secret="demo") as client:
            res = await client.extract_card(ImageSource.from_bytes(FAKE_JPEG))
    card = res.cards[0]
    print(card.type, card.valid, card.info.get("id"), card.info.get("name"), card.info.date("dob"))


anyio.run(main)

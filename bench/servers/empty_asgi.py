"""The server's own limit: a framework-free ASGI app that reads the body and answers the bytes a
one-row ``POST /prediction?score=true`` answers, with the same headers. No routing, no parsing.

    uvicorn --app-dir bench/servers empty_asgi:app
"""

BODY = (
    b'{"prediction":1,"is_anomaly":false,"model":"default","version":1,'
    b'"model_version":"0123456789abcdef","kind":"iforest","anomaly_score":0.5311762721924872}'
)
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-length", str(len(BODY)).encode()),
        (b"content-type", b"application/json"),
    ],
}
RESPONSE = {"type": "http.response.body", "body": BODY}


async def app(scope, receive, send):
    if scope["type"] != "http":  # lifespan: nothing to start
        message = await receive()
        while message["type"] != "lifespan.shutdown":
            await send({"type": message["type"] + ".complete"})
            message = await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(START)
    await send(RESPONSE)

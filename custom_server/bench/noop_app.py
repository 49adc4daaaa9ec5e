"""The ceiling: a no-op endpoint on the same HTTP stack (uvicorn + FastAPI), reading the body."""

from fastapi import FastAPI, Request
from starlette.responses import Response

_BODY = b'{"model_name":"iris","outputs":[{"name":"predict","datatype":"INT64","shape":[1],"data":[0]}]}'


def create() -> FastAPI:
    """uvicorn factory."""
    app = FastAPI()

    @app.post("/v2/models/{name}/infer")
    async def infer(request: Request, name: str) -> Response:
        await request.body()
        return Response(_BODY, media_type="application/json")

    return app

"""A FastAPI app with skyrelay beside it, for ``skyrelay run workers_fastapi_app:app``."""

from fastapi import FastAPI

from skyrelay.fastapi import SkyRelay

app = FastAPI()
relay = SkyRelay(app, port=0)

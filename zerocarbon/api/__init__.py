"""The HTTP API: FastAPI app factory (:func:`zerocarbon.api.app.create_app`), routes,
the live event stream and the server that runs them."""

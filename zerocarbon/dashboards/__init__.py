"""The built-in live web page (served by the API app at ``/``)."""

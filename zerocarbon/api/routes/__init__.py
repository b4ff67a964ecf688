"""One router per resource: health, devices, carbon, live, status."""

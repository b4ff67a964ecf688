"""One router per resource: health, devices, carbon, energy, lines, live, status."""

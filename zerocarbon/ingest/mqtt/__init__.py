"""MQTT: the subscriber that maps topics and JSON payloads to readings, and a local broker."""

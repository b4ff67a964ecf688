"""Many factories, one group view: gateways uplink to their group's center over NATS
JetStream (``docs/center.md``)."""

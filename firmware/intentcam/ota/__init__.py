"""Over-the-air model updates on the device: signed bundles, the artifact store, self-test,
hot swap, probation and rollback, and the hawkBit DDI client. The fleet side (building and
signing bundles, MQTT rollouts) is ``intentcam_ota`` (console script ``intentcam-ota``)."""

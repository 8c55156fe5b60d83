"""Fleet-side OTA tooling (console script ``intentcam-ota``): keys, signed bundles, rollouts.

The bundle format and its verification live with the device (:mod:`intentcam.ota.bundle`), so
what a fleet builds and what a device accepts are checked by the same code.
"""

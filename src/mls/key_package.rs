//! Key packages for the bridge's devices.

//! Key packages: generate, publish, claim (one-time first, then last resort).

//! The client-server API as the appservice uses it.

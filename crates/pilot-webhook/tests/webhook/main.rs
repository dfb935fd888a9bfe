//! Integration tests of the webhook plugin against real HTTP receivers on 127.0.0.1 and a real
//! pilot-core bus. Every test checks the accounting identity at its end.

mod receiver;
mod support;

mod circuit;
mod delivery;
mod queue;
mod shutdown;
mod ssrf;
mod swap;

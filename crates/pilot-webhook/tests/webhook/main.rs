//! Integration tests of the webhook plugin against real HTTP receivers on 127.0.0.1 and a real
//! pilot-core bus. Every test checks the accounting identity at its end.

mod receiver;
mod support;

mod circuit;
mod concurrency;
mod delivery;
mod durable;
mod filters;
mod logging;
mod queue;
mod settings;
mod shutdown;
mod signing;
mod ssrf;
mod standards;
mod supervision;
mod swap;
mod tools;

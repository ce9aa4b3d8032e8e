//! Pigeon, a LAN messenger that talks to FeiQ, IP Messenger and iptux.
//!
//! The wire format lives in the `pigeon-protocol` crate; this crate holds
//! the faces (`cli`) and what they need around it.

pub mod capture;
pub mod chat;
pub mod cli;
pub mod config;
pub mod control;
pub mod doctor;
pub mod engine;
pub mod keys;
pub mod net;
pub mod node;
pub mod store;
pub mod term;
pub mod transfer;
pub mod web;

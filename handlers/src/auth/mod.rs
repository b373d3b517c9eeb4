//! Synchronous auth over HTTP: sign-up, login, current user.

pub mod get_user;
pub mod login;
pub mod signup;

//! Notes, users, events, validation and tokens: pure logic, no AWS types.

pub mod clock;
pub mod cursor;
pub mod error;
pub mod events;
pub mod feed;
pub mod note;
pub mod password;
pub mod token;
pub mod user;

pub use error::{AppError, FieldError};

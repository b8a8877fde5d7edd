//! Who asked the 中控 for a refresh: the `by` of the refresh audit, and the budget of passive
//! refreshes a scoped client may cause.

/// The party behind a request to the 中控.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    /// A client's name, `key` for an unscoped key, `wxmp` for wxmp itself.
    pub name: String,
    /// Passive refreshes it may cause per app per minute, across instances; `None` = no cap.
    pub refresh_per_minute: Option<u32>,
}

impl Requester {
    /// wxmp itself: the refresher, ticket fetches, late replies sent as 客服消息.
    pub fn wxmp() -> Self {
        Requester {
            name: "wxmp".to_owned(),
            refresh_per_minute: None,
        }
    }

    /// A caller with an unscoped key.
    pub fn key() -> Self {
        Requester {
            name: "key".to_owned(),
            refresh_per_minute: None,
        }
    }

    /// A named client with its budget.
    pub fn client(name: &str, refresh_per_minute: u32) -> Self {
        Requester {
            name: name.to_owned(),
            refresh_per_minute: Some(refresh_per_minute),
        }
    }
}

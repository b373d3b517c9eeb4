//! AWS clients made on first use. A container's init does not load aws-config (its provider chains,
//! the HTTPS client and its TLS roots: ~5 ms of a cold start) or build a client until a request
//! needs AWS, so a request answered without AWS — a refusal, a bad body, a missing token — does not
//! wait for them, and a handler never builds the clients it does not call.

use std::sync::Arc;

use aws_config::SdkConfig;
use tokio::sync::OnceCell;

/// aws-config's configuration, loaded once from the environment the first time a client needs it,
/// and shared by every client made from it.
#[derive(Clone, Default)]
pub struct LazyConfig(Arc<OnceCell<SdkConfig>>);

impl LazyConfig {
    pub async fn get(&self) -> &SdkConfig {
        self.0
            .get_or_init(|| aws_config::load_defaults(aws_config::BehaviorVersion::latest()))
            .await
    }
}

type Make<C> = Box<dyn Fn(&SdkConfig) -> C + Send + Sync>;

/// One AWS client: given ready, or made from a [`LazyConfig`] on first use.
pub struct LazyClient<C> {
    client: OnceCell<C>,
    make: Option<(LazyConfig, Make<C>)>,
}

impl<C> LazyClient<C> {
    pub fn ready(client: C) -> Self {
        Self {
            client: OnceCell::new_with(Some(client)),
            make: None,
        }
    }

    pub fn on_first_use(
        config: &LazyConfig,
        make: impl Fn(&SdkConfig) -> C + Send + Sync + 'static,
    ) -> Self {
        Self {
            client: OnceCell::new(),
            make: Some((config.clone(), Box::new(make))),
        }
    }

    pub async fn get(&self) -> &C {
        self.client
            .get_or_init(|| async {
                let (config, make) = self
                    .make
                    .as_ref()
                    .expect("a LazyClient is either ready or knows how to make its client");
                make(config.get().await)
            })
            .await
    }
}

impl<C> From<C> for LazyClient<C> {
    fn from(client: C) -> Self {
        Self::ready(client)
    }
}

impl<C> std::fmt::Debug for LazyClient<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyClient")
            .field("made", &self.client.initialized())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_client_is_made_once_on_first_use_and_never_if_unused() {
        let config = LazyConfig::default();
        let made = Arc::new(AtomicUsize::new(0));
        let counter = made.clone();
        let used = LazyClient::on_first_use(&config, move |sdk: &SdkConfig| {
            counter.fetch_add(1, Ordering::SeqCst);
            sdk.region().map(|r| r.to_string())
        });
        let never = LazyClient::on_first_use(&config, |_: &SdkConfig| -> () {
            panic!("a client nobody asked for was made")
        });
        assert!(
            config.0.get().is_none(),
            "nothing loaded before a client is asked for"
        );
        assert_eq!(made.load(Ordering::SeqCst), 0);
        used.get().await;
        used.get().await;
        assert_eq!(made.load(Ordering::SeqCst), 1, "made once");
        assert!(
            config.0.get().is_some(),
            "the configuration is loaded with the first client"
        );
        assert!(format!("{never:?}").contains("made: false"));
        assert_eq!(*LazyClient::ready(7).get().await, 7);
    }
}

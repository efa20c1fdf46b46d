//! `UpstreamService`: what is behind this gateway, for exploration.

use std::sync::Arc;

use super::paging::PageRequest;
use crate::{
    error::{GatewayError, Reason, Result},
    names::{self, UpstreamRef},
    proto::{
        GetUpstreamRequest, ListUpstreamsRequest, ListUpstreamsResponse, Upstream,
        upstream_service_server::UpstreamService,
    },
    upstream::Registry,
};

pub struct UpstreamApi {
    registry: Arc<Registry>,
}

impl UpstreamApi {
    pub fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }

    async fn list(&self, req: &ListUpstreamsRequest) -> Result<ListUpstreamsResponse> {
        let page = PageRequest::<String>::new(&req.page_token, req.page_size, "upstreams", "")?;
        let all: Vec<Upstream> = self.registry.visible().map(|u| u.info()).collect();
        let (upstreams, next_page_token) = page.take(all, |u| u.name.clone());
        Ok(ListUpstreamsResponse {
            upstreams,
            next_page_token,
        })
    }

    async fn get(&self, req: &GetUpstreamRequest) -> Result<Upstream> {
        match names::parse_upstream(&req.name, "name")? {
            UpstreamRef::Named(n) => Ok(self.registry.get(&n)?.info()),
            UpstreamRef::Any => Err(GatewayError::invalid(
                Reason::InvalidName,
                "name",
                "'-' names no single upstream; use ListUpstreams",
            )),
        }
    }
}

service! {
    impl UpstreamService for UpstreamApi {
        unary {
            list_upstreams(req: ListUpstreamsRequest) -> ListUpstreamsResponse { "upstreams" => list }
            get_upstream(req: GetUpstreamRequest) -> Upstream { &req.name => get }
        }
    }
}

//! Accounts on the HTTP endpoint, over real HTTP against a real [`HttpServer`] on port 0:
//! `require_auth = "always"` makes the loopback test server behave as a non-loopback bind does.
//! Probe routes mounted like a service's show the [`Caller`] handlers receive.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::Extension;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use base64::Engine as _;
use tokio_util::sync::CancellationToken;
use uns_client::Metrics;
use uns_service::auth::PasswordCheck;
use uns_service::{
    Caller, Health, HttpAccount, HttpAuth, HttpAuthConfig, HttpAuthError, HttpRole, HttpServer,
    HttpStartError, RequireAuth, Routes,
};

const ERP_TOKEN: &str = "erp-token-0123456789";

fn password(expected: &'static str) -> PasswordCheck {
    Arc::new(move |presented| presented == expected.as_bytes())
}

fn accounts() -> Vec<HttpAccount> {
    vec![
        HttpAccount::new("vera", HttpRole::Viewer, password("vera-pw")),
        HttpAccount::new("otto", HttpRole::Operator, password("otto-pw")),
        HttpAccount::new("ada", HttpRole::Admin, password("ada-pw")),
        HttpAccount::without_access("line-1", "an edge account", password("line-pw")),
    ]
}

async fn whoami(caller: Option<Extension<Caller>>) -> axum::response::Response {
    let caller = caller.map(|Extension(caller)| caller);
    axum::Json(serde_json::json!({
        "username": caller.as_ref().and_then(|caller| caller.username.clone()),
        "role": caller.map(|caller| caller.role),
    }))
    .into_response()
}

/// Like the ERP bridge's ingress: its own bearer check.
async fn erp_ingress(headers: HeaderMap) -> StatusCode {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    if presented == Some(&format!("Bearer {ERP_TOKEN}")) {
        StatusCode::ACCEPTED
    } else {
        StatusCode::UNAUTHORIZED
    }
}

fn probe_routes() -> Router {
    Router::new()
        .route("/api/v1/probe", get(whoami))
        .route("/api/v1/work-orders/{id}/{verb}", post(whoami))
        .route("/api/v1/console/publish", post(whoami))
        .route("/api/v1/master-data/materials", post(whoami))
        .route("/api/v1/production-orders", post(erp_ingress))
}

struct Server {
    http: HttpServer,
    metrics: Metrics,
    stop: CancellationToken,
}

impl Server {
    async fn start(auth: HttpAuth) -> anyhow::Result<Self> {
        let health = Health::default();
        health.set("probe", true, "running");
        let routes = Routes::default();
        routes.mount("probe", probe_routes())?;
        let metrics = Metrics::new();
        let stop = CancellationToken::new();
        let http = HttpServer::start_with_auth(
            "127.0.0.1:0".parse()?,
            health,
            metrics.clone(),
            routes,
            auth,
            stop.clone(),
        )
        .await?;
        Ok(Self {
            http,
            metrics,
            stop,
        })
    }

    async fn always() -> anyhow::Result<Self> {
        Self::start(HttpAuth::new(
            accounts(),
            HttpAuthConfig {
                require_auth: RequireAuth::Always,
                ..HttpAuthConfig::default()
            },
        ))
        .await
    }

    fn addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.http.join().await?;
        Ok(())
    }
}

struct Reply {
    status: u16,
    headers: ureq::http::HeaderMap,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    }

    fn json(&self) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_str(&self.body)?)
    }
}

async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> anyhow::Result<Reply> {
    let mut request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let request = request.body(body.to_owned())?;
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .build()
            .into();
        let mut response = agent.run(request)?;
        Ok(Reply {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.body_mut().read_to_string()?,
        })
    })
    .await?
}

/// One header, as `send` takes them.
type Header = [(&'static str, String); 1];

fn basic(username: &str, password: &str) -> Header {
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    [("authorization", format!("Basic {encoded}"))]
}

fn bearer(token: &str) -> Header {
    [("authorization", format!("Bearer {token}"))]
}

#[tokio::test]
async fn without_or_with_wrong_credentials_only_healthz_answers() -> anyhow::Result<()> {
    let server = Server::always().await?;
    let addr = server.addr();
    let healthz = send(addr, "GET", "/healthz", &[], "").await?;
    assert_eq!(healthz.status, 200, "{}", healthz.body);
    for path in ["/metrics", "/api/v1/probe", "/"] {
        let reply = send(addr, "GET", path, &[], "").await?;
        assert_eq!(reply.status, 401, "{path}: {}", reply.body);
        assert!(reply.header("www-authenticate").contains("Basic"), "{path}");
        assert!(reply.body.contains("needs an account"), "{}", reply.body);
    }
    let wrong = [
        basic("vera", "nope"),
        basic("nobody", "vera-pw"),
        bearer("not-a-token"),
        [("authorization", "Digest abc".to_owned())],
        [("authorization", "Basic !!!".to_owned())],
    ];
    for credentials in wrong {
        let reply = send(addr, "GET", "/metrics", &credentials, "").await?;
        assert_eq!(reply.status, 401, "{credentials:?}: {}", reply.body);
    }
    // A browser asking for a page is sent to the login form, which is open.
    let html = [("accept", "text/html,application/xhtml+xml".to_owned())];
    let page = send(addr, "GET", "/api/v1/probe?x=1", &html, "").await?;
    assert_eq!(page.status, 303);
    assert_eq!(
        page.header("location"),
        "/login?next=%2Fapi%2Fv1%2Fprobe%3Fx%3D1"
    );
    let form = send(addr, "GET", "/login?next=%2Fapi%2Fv1%2Fprobe", &html, "").await?;
    assert_eq!(form.status, 200);
    assert!(
        form.body
            .contains("<form method=\"post\" action=\"/api/v1/login\">")
    );
    assert!(
        form.body.contains("value=\"/api/v1/probe\""),
        "{}",
        form.body
    );
    assert!(
        !form.body.contains("<script"),
        "the login page has no script"
    );
    // Every refusal is counted.
    let metrics = server.metrics.encode();
    assert!(
        metrics.contains("uns_http_auth_refused_total{reason=\"unauthenticated\"} 9"),
        "{metrics}"
    );
    server.stop().await
}

#[tokio::test]
async fn each_role_gets_what_it_may_and_handlers_see_the_caller() -> anyhow::Result<()> {
    let server = Server::always().await?;
    let addr = server.addr();
    let vera = basic("vera", "vera-pw");
    let otto = basic("otto", "otto-pw");
    let ada = basic("ada", "ada-pw");

    let metrics = send(addr, "GET", "/metrics", &vera, "").await?;
    assert_eq!(metrics.status, 200, "{}", metrics.body);
    let whoami = send(addr, "GET", "/api/v1/probe", &vera, "").await?;
    assert_eq!(
        whoami.json()?,
        serde_json::json!({ "username": "vera", "role": "viewer" })
    );

    let order_action = "/api/v1/work-orders/wo-1/start";
    let publish = "/api/v1/console/publish";
    for path in [order_action, publish] {
        let refused = send(addr, "POST", path, &vera, "{}").await?;
        assert_eq!(refused.status, 403, "{path}: {}", refused.body);
        assert!(
            refused.body.contains("needs the role operator"),
            "{}",
            refused.body
        );
        let allowed = send(addr, "POST", path, &otto, "{}").await?;
        assert_eq!(allowed.status, 200, "{path}: {}", allowed.body);
        assert_eq!(allowed.json()?["username"], "otto");
    }
    // Master data is for admins.
    let materials = "/api/v1/master-data/materials";
    let refused = send(addr, "POST", materials, &otto, "{}").await?;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let allowed = send(addr, "POST", materials, &ada, "{}").await?;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    assert_eq!(allowed.json()?["role"], "admin");
    let delete = send(addr, "DELETE", "/api/v1/probe", &otto, "").await?;
    assert_eq!(delete.status, 403, "{}", delete.body);

    // An edge account's password is right, but it has no HTTP access.
    let edge = send(addr, "GET", "/metrics", &basic("line-1", "line-pw"), "").await?;
    assert_eq!(edge.status, 403, "{}", edge.body);
    assert!(edge.body.contains("no HTTP access"), "{}", edge.body);

    let metrics = server.metrics.encode();
    assert!(
        metrics.contains("uns_http_auth_refused_total{reason=\"forbidden\"} 5"),
        "{metrics}"
    );
    server.stop().await
}

#[tokio::test]
async fn a_login_gives_a_token_and_a_cookie_until_logout() -> anyhow::Result<()> {
    let server = Server::always().await?;
    let addr = server.addr();
    let json = [("content-type", "application/json".to_owned())];
    let wrong = send(
        addr,
        "POST",
        "/api/v1/login",
        &json,
        r#"{"username": "otto", "password": "wrong"}"#,
    )
    .await?;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    let login = send(
        addr,
        "POST",
        "/api/v1/login",
        &json,
        r#"{"username": "otto", "password": "otto-pw"}"#,
    )
    .await?;
    assert_eq!(login.status, 200, "{}", login.body);
    let reply = login.json()?;
    assert_eq!(reply["role"], "operator");
    assert_eq!(reply["expires_in_s"], 12 * 3600);
    let token = reply["token"].as_str().unwrap_or_default().to_owned();
    assert!(token.len() >= 64, "{token}");
    assert!(login.header("set-cookie").contains("HttpOnly"));

    let with_token = send(
        addr,
        "POST",
        "/api/v1/console/publish",
        &bearer(&token),
        "{}",
    )
    .await?;
    assert_eq!(with_token.status, 200, "{}", with_token.body);
    assert_eq!(with_token.json()?["username"], "otto");

    let logout = send(addr, "POST", "/api/v1/logout", &bearer(&token), "").await?;
    assert_eq!(logout.status, 204);
    let after = send(addr, "GET", "/api/v1/probe", &bearer(&token), "").await?;
    assert_eq!(after.status, 401, "{}", after.body);

    // The /login form: redirected to `next` with the session cookie, which then works.
    let form = [(
        "content-type",
        "application/x-www-form-urlencoded".to_owned(),
    )];
    let submitted = send(
        addr,
        "POST",
        "/api/v1/login",
        &form,
        "username=vera&password=vera-pw&next=%2Fapi%2Fv1%2Fprobe",
    )
    .await?;
    assert_eq!(submitted.status, 303, "{}", submitted.body);
    assert_eq!(submitted.header("location"), "/api/v1/probe");
    let cookie = submitted
        .header("set-cookie")
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(cookie.starts_with("uns_session="), "{cookie}");
    let page = send(addr, "GET", "/api/v1/probe", &[("cookie", cookie)], "").await?;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.json()?["username"], "vera");
    // A wrong password on the form shows the form again, with the reason.
    let again = send(
        addr,
        "POST",
        "/api/v1/login",
        &form,
        "username=vera&password=nope",
    )
    .await?;
    assert_eq!(again.status, 401);
    assert!(again.body.contains("wrong password"), "{}", again.body);
    server.stop().await
}

#[tokio::test]
async fn a_route_with_its_own_bearer_check_still_gets_its_tokens() -> anyhow::Result<()> {
    let server = Server::always().await?;
    let addr = server.addr();
    let path = "/api/v1/production-orders";
    let erp = send(addr, "POST", path, &bearer(ERP_TOKEN), "{}").await?;
    assert_eq!(erp.status, 202, "{}", erp.body);
    let other = send(addr, "POST", path, &bearer("some-other-token"), "{}").await?;
    assert_eq!(
        other.status, 401,
        "the route's own check refuses: {}",
        other.body
    );
    let anonymous = send(addr, "POST", path, &[], "{}").await?;
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    server.stop().await
}

#[tokio::test]
async fn loopback_without_accounts_is_open_and_the_network_is_refused() -> anyhow::Result<()> {
    // The default (`auto`) on loopback: no account needed, callers are admins as before.
    let server = Server::start(HttpAuth::default()).await?;
    let open = send(
        server.addr(),
        "POST",
        "/api/v1/master-data/materials",
        &[],
        "{}",
    )
    .await?;
    assert_eq!(open.status, 200, "{}", open.body);
    assert_eq!(
        open.json()?,
        serde_json::json!({ "username": null, "role": "admin" })
    );
    server.stop().await?;

    // Accounts configured, still loopback with `auto`: open, but credentials given are checked.
    let server = Server::start(HttpAuth::new(accounts(), HttpAuthConfig::default())).await?;
    let addr = server.addr();
    assert_eq!(send(addr, "GET", "/metrics", &[], "").await?.status, 200);
    let wrong = send(addr, "GET", "/metrics", &basic("vera", "x"), "").await?;
    assert_eq!(wrong.status, 401);
    server.stop().await?;

    // A non-loopback address without accounts is refused before anything is bound.
    let network: SocketAddr = "0.0.0.0:0".parse()?;
    let refused = HttpServer::start(
        network,
        Health::default(),
        Metrics::new(),
        Routes::default(),
        CancellationToken::new(),
    )
    .await;
    match refused {
        Err(HttpStartError::Auth(HttpAuthError::AnonymousOnNetwork { addr })) => {
            assert_eq!(addr, network);
        }
        Err(other) => anyhow::bail!("refused for another reason: {other}"),
        Ok(_) => anyhow::bail!("a non-loopback bind without accounts started"),
    }
    Ok(())
}

//! Accounts on the HTTP endpoint: who the caller is ([`Caller`]) and what it may do there.
//!
//! The accounts are the broker's (`[broker] users`), given to [`HttpAuth::new`] as
//! [`HttpAccount`]s by the binary (this crate does not know how a password is hashed: each account
//! carries its own check). A request authenticates with `Authorization: Basic` (username and
//! password), `Authorization: Bearer TOKEN` or the `uns_session` cookie; a token comes from
//! `POST /api/v1/login` (JSON or the `/login` page's form), lives [`HttpAuthConfig::session_ttl`]
//! in memory, and ends with `POST /api/v1/logout` or a restart.
//!
//! Whether an account is needed: [`RequireAuth::Auto`] (the default) asks for one once the bind
//! address is not loopback, [`RequireAuth::Always`] on loopback too. A non-loopback bind without
//! an account that may use HTTP is refused ([`HttpAuth::check_listen`]) unless
//! [`HttpAuthConfig::allow_anonymous`] says so on purpose, as the broker does.
//!
//! What each role may do is one table, [`needed_role`]: `/healthz` and the login endpoints are
//! open, every `GET`/`HEAD` needs a viewer, the `POST`s of [`OPERATOR_WRITES`] an operator, every
//! other method or path an admin. Broker roles without an HTTP meaning (`service`, `edge`) are
//! refused with 403 (their secrets belong to machines that only speak MQTT).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;
use uns_client::Metrics;

/// What a caller may do on HTTP, in increasing order of rights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpRole {
    /// `GET` (and `HEAD`) everything, including `/metrics`.
    Viewer,
    /// Also the order, lot, replay and console-publish actions ([`OPERATOR_WRITES`]).
    Operator,
    /// Everything.
    Admin,
}

impl HttpRole {
    /// The role's name as in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpRole::Viewer => "viewer",
            HttpRole::Operator => "operator",
            HttpRole::Admin => "admin",
        }
    }
}

/// Who sent a request, in its extensions for every mounted route
/// (`axum::Extension<uns_service::Caller>`), so a handler can check rights of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The account's username; `None` for an anonymous caller (no account needed on this
    /// endpoint, or `allow_anonymous`).
    pub username: Option<String>,
    /// What the caller may do.
    pub role: HttpRole,
}

/// Whether requests need an account.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RequireAuth {
    /// Once the bind address is not loopback (the default).
    #[default]
    Auto,
    /// On every address, loopback included.
    Always,
}

/// The HTTP endpoint's own settings (`[http]` in the config file, besides `listen`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpAuthConfig {
    /// When an account is needed.
    pub require_auth: RequireAuth,
    /// Serve callers without credentials even where an account would be needed: as admins
    /// while no HTTP account exists, else as viewers. Explicit opt-in for a non-loopback bind
    /// behind something else that guards it.
    pub allow_anonymous: bool,
    /// How long a token from `POST /api/v1/login` stays valid.
    pub session_ttl: Duration,
}

impl Default for HttpAuthConfig {
    fn default() -> Self {
        Self {
            require_auth: RequireAuth::Auto,
            allow_anonymous: false,
            session_ttl: DEFAULT_SESSION_TTL,
        }
    }
}

/// Default life of a login token (12 hours: one shift and then some).
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Most login sessions held at once; beyond, the one closest to expiry is dropped.
const MAX_SESSIONS: usize = 10_000;

/// Largest login request body read.
const MAX_LOGIN_BODY: usize = 16 * 1024;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "uns_session";

/// `POST` paths an operator may use (`*` is one path segment, a trailing `/**` any rest): work
/// order actions, lot receipt and lot actions, dead-letter replay, and everything the console
/// posts (its publish endpoint).
pub const OPERATOR_WRITES: &[&str] = &[
    "/api/v1/work-orders/*/*",
    "/api/v1/lots",
    "/api/v1/lots/*/*",
    "/api/v1/dead-letters/*/replay",
    "/api/v1/console/**",
];

/// Paths whose routes check a bearer token of their own (the ERP bridge's `[erp_bridge]
/// tokens`): a bearer token that is no login token is handed to them unchecked here, and the
/// route decides.
pub const OWN_BEARER_PATHS: &[&str] = &[
    "/api/v1/production-orders",
    "/api/v1/master-data/**",
    "/api/v1/dead-letters",
    "/api/v1/dead-letters/**",
];

/// Paths open to everyone: the health check and the login itself.
const OPEN_PATHS: &[&str] = &["/healthz", "/login", "/api/v1/login", "/api/v1/logout"];

/// The role a request needs, or `None` when it is open to everyone.
pub fn needed_role(method: &Method, path: &str) -> Option<HttpRole> {
    if OPEN_PATHS.contains(&path) {
        return None;
    }
    if method == Method::GET || method == Method::HEAD {
        return Some(HttpRole::Viewer);
    }
    if method == Method::POST
        && OPERATOR_WRITES
            .iter()
            .any(|pattern| path_matches(pattern, path))
    {
        return Some(HttpRole::Operator);
    }
    Some(HttpRole::Admin)
}

/// Whether `path` matches `pattern` (`*`: one non-empty segment; a final `**`: one or more).
fn path_matches(pattern: &str, path: &str) -> bool {
    let mut pattern_parts = pattern.split('/');
    let mut path_parts = path.split('/');
    loop {
        match (pattern_parts.next(), path_parts.next()) {
            (Some("**"), Some(part)) => return !part.is_empty(),
            (Some("*"), Some(part)) if !part.is_empty() => {}
            (Some(expected), Some(part)) if expected == part => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Checks a presented password; `true` when it is the account's.
pub type PasswordCheck = Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// One account as the HTTP endpoint sees it.
#[derive(Clone)]
pub struct HttpAccount {
    username: String,
    /// `None`: the account exists (its password is checked) but has no HTTP access.
    role: Option<HttpRole>,
    /// Why an account without HTTP access has none, for the 403.
    no_access_reason: String,
    check: PasswordCheck,
}

impl HttpAccount {
    /// An account that may use HTTP as `role`.
    pub fn new(username: impl Into<String>, role: HttpRole, check: PasswordCheck) -> Self {
        Self {
            username: username.into(),
            role: Some(role),
            no_access_reason: String::new(),
            check,
        }
    }

    /// An account whose password is known but which may not use HTTP (a broker `service` or
    /// `edge` account); `reason` ends up in the 403.
    pub fn without_access(
        username: impl Into<String>,
        reason: impl Into<String>,
        check: PasswordCheck,
    ) -> Self {
        Self {
            username: username.into(),
            role: None,
            no_access_reason: reason.into(),
            check,
        }
    }
}

impl fmt::Debug for HttpAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpAccount")
            .field("username", &self.username)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Why the endpoint may not start on an address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HttpAuthError {
    /// A non-loopback bind without an account that may use HTTP.
    #[error(
        "[http] listen {addr} is not a loopback address and no account may use HTTP: anyone on \
         the network could read /metrics and the APIs. Add an account with role admin, operator \
         or viewer (`--user NAME:PASSWORD:viewer`, or `users = [{{ username = \"NAME\", password \
         = \"PASSWORD\", role = \"viewer\" }}]` under [broker]), accept anonymous callers on \
         purpose (`allow_anonymous = true` under [http]), or listen on 127.0.0.1"
    )]
    AnonymousOnNetwork {
        /// The bind address.
        addr: SocketAddr,
    },
    /// `require_auth = "always"` without an account that may use HTTP.
    #[error(
        "[http] require_auth = \"always\" but no account may use HTTP: add an account with role \
         admin, operator or viewer under [broker] users (or --user NAME:PASSWORD:ROLE)"
    )]
    AlwaysWithoutAccounts,
}

/// The accounts, the settings and the login sessions of one HTTP endpoint. Cheap to clone.
#[derive(Clone, Default)]
pub struct HttpAuth {
    inner: Arc<Inner>,
}

struct Inner {
    accounts: HashMap<String, HttpAccount>,
    config: HttpAuthConfig,
    /// Whether an account is needed: fixed when the endpoint starts ([`HttpAuth::bind`]).
    required: Mutex<bool>,
    sessions: Mutex<HashMap<String, Session>>,
    refused: Family<RefusalLabel, Counter>,
    /// Password checks running at once: an Argon2 check takes ~19 MiB and tens of milliseconds,
    /// so a flood of Basic requests with wrong passwords waits here instead of taking the
    /// memory and every blocking thread.
    checks: tokio::sync::Semaphore,
}

/// Most password checks at once ([`Inner::checks`]).
const MAX_CONCURRENT_CHECKS: usize = 4;

impl Default for Inner {
    fn default() -> Self {
        Self {
            accounts: HashMap::new(),
            config: HttpAuthConfig::default(),
            required: Mutex::new(false),
            sessions: Mutex::new(HashMap::new()),
            refused: Family::default(),
            checks: tokio::sync::Semaphore::new(MAX_CONCURRENT_CHECKS),
        }
    }
}

#[derive(Clone, Debug)]
struct Session {
    caller: Caller,
    expires: Instant,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct RefusalLabel {
    /// `unauthenticated` (401) or `forbidden` (403).
    reason: &'static str,
}

impl fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpAuth")
            .field(
                "accounts",
                &self.inner.accounts.values().collect::<Vec<_>>(),
            )
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl HttpAuth {
    /// The endpoint of `accounts` with `config`. A username given twice keeps the last.
    pub fn new(accounts: Vec<HttpAccount>, config: HttpAuthConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                accounts: accounts
                    .into_iter()
                    .map(|account| (account.username.clone(), account))
                    .collect(),
                config,
                ..Inner::default()
            }),
        }
    }

    /// Whether an endpoint on `addr` may start with these accounts and settings.
    pub fn check_listen(&self, addr: SocketAddr) -> Result<(), HttpAuthError> {
        let any_http_account = self.any_http_account();
        if self.inner.config.require_auth == RequireAuth::Always && !any_http_account {
            return Err(HttpAuthError::AlwaysWithoutAccounts);
        }
        if !is_loopback(addr) && !any_http_account && !self.inner.config.allow_anonymous {
            return Err(HttpAuthError::AnonymousOnNetwork { addr });
        }
        Ok(())
    }

    /// Whether callers need an account on an endpoint bound to `addr`.
    pub fn required_on(&self, addr: SocketAddr) -> bool {
        self.inner.config.require_auth == RequireAuth::Always || !is_loopback(addr)
    }

    /// Registers `uns_http_auth_refused{reason}` on `metrics`.
    pub(crate) fn register_metrics(&self, metrics: &Metrics) {
        metrics.register(
            "http_auth_refused",
            "HTTP requests refused: unauthenticated (401: no, wrong or expired credentials) or forbidden (403: the account's role may not)",
            self.inner.refused.clone(),
        );
    }

    /// Fixes whether accounts are needed, for an endpoint bound to `addr`.
    pub(crate) fn bind(&self, addr: SocketAddr) {
        *lock(&self.inner.required) = self.required_on(addr);
    }

    fn any_http_account(&self) -> bool {
        self.inner
            .accounts
            .values()
            .any(|account| account.role.is_some())
    }

    fn required(&self) -> bool {
        *lock(&self.inner.required)
    }

    /// The caller without credentials: `None` when one is needed.
    fn anonymous(&self) -> Option<Caller> {
        let role = if !self.any_http_account() {
            HttpRole::Admin
        } else {
            HttpRole::Viewer
        };
        if !self.required() {
            // No account needed here (loopback): everything, as before HTTP had accounts.
            return Some(Caller {
                username: None,
                role: HttpRole::Admin,
            });
        }
        self.inner.config.allow_anonymous.then_some(Caller {
            username: None,
            role,
        })
    }

    /// Checks a username and password (off the async workers: an Argon2 hash takes tens of
    /// milliseconds). `Ok(None)`: right password, no HTTP access.
    async fn verify(&self, username: &str, password: &[u8]) -> Result<Account, Refusal> {
        let Some(account) = self.inner.accounts.get(username).cloned() else {
            return Err(Refusal::unauthenticated(
                "unknown username or wrong password",
            ));
        };
        let check = account.check.clone();
        let password = password.to_vec();
        // The semaphore is never closed, so `acquire` only fails if it were: then refuse.
        let Ok(_permit) = self.inner.checks.acquire().await else {
            return Err(Refusal::unauthenticated("the endpoint is shutting down"));
        };
        let right = tokio::task::spawn_blocking(move || check(&password))
            .await
            .unwrap_or(false);
        if !right {
            return Err(Refusal::unauthenticated(
                "unknown username or wrong password",
            ));
        }
        Ok(Account(account))
    }

    fn session(&self, token: &str) -> Option<Caller> {
        let mut sessions = lock(&self.inner.sessions);
        let session = sessions.get(token)?;
        if session.expires <= Instant::now() {
            sessions.remove(token);
            return None;
        }
        Some(session.caller.clone())
    }

    /// A new login token for `caller`.
    fn open_session(&self, caller: Caller) -> String {
        // Two v4 UUIDs: 244 random bits from the OS.
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let now = Instant::now();
        let mut sessions = lock(&self.inner.sessions);
        sessions.retain(|_, session| session.expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, session)| session.expires)
                .map(|(token, _)| token.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            token.clone(),
            Session {
                caller,
                expires: now + self.inner.config.session_ttl,
            },
        );
        token
    }

    fn close_session(&self, token: &str) -> bool {
        lock(&self.inner.sessions).remove(token).is_some()
    }

    fn count(&self, refusal: &Refusal) {
        let reason = if refusal.status == StatusCode::FORBIDDEN {
            "forbidden"
        } else {
            "unauthenticated"
        };
        self.inner
            .refused
            .get_or_create(&RefusalLabel { reason })
            .inc();
    }
}

/// An account whose password was right.
struct Account(HttpAccount);

impl Account {
    fn caller(&self) -> Result<Caller, Refusal> {
        match self.0.role {
            Some(role) => Ok(Caller {
                username: Some(self.0.username.clone()),
                role,
            }),
            None => Err(Refusal::forbidden(format!(
                "account {:?} has no HTTP access: {}",
                self.0.username, self.0.no_access_reason
            ))),
        }
    }
}

fn is_loopback(addr: SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every update is one whole insert or remove: a poisoned map is still consistent.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A 401 or 403 with its message.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn unauthenticated(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
        }
    }

    fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            message: message.into(),
        }
    }

    /// The response: JSON for programs; a browser asking for a page without credentials is
    /// sent to `/login` instead.
    fn into_response(self, headers: &HeaderMap, path_and_query: &str) -> Response {
        if self.status == StatusCode::UNAUTHORIZED && wants_html(headers) {
            let next =
                url::form_urlencoded::byte_serialize(path_and_query.as_bytes()).collect::<String>();
            return redirect(&format!("/login?next={next}"), None);
        }
        let mut response =
            (self.status, axum::Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"uns\", Bearer realm=\"uns\""),
            );
        }
        response
    }
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

fn redirect(location: &str, cookie: Option<String>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    if let Some(cookie) = cookie.and_then(|cookie| HeaderValue::from_str(&cookie).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// What a request presents.
enum Credentials {
    Basic { username: String, password: Vec<u8> },
    Bearer(String),
    Cookie(String),
    Malformed,
    None,
}

fn credentials(headers: &HeaderMap) -> Credentials {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let Ok(value) = value.to_str() else {
            return Credentials::Malformed;
        };
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim());
            let Ok(decoded) = decoded else {
                return Credentials::Malformed;
            };
            let Some(colon) = decoded.iter().position(|byte| *byte == b':') else {
                return Credentials::Malformed;
            };
            let Ok(username) = std::str::from_utf8(&decoded[..colon]) else {
                return Credentials::Malformed;
            };
            return Credentials::Basic {
                username: username.to_owned(),
                password: decoded[colon + 1..].to_vec(),
            };
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            return Credentials::Bearer(rest.trim().to_owned());
        }
        return Credentials::Malformed;
    }
    match session_cookie(headers) {
        Some(token) => Credentials::Cookie(token),
        None => Credentials::None,
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, token)| token.to_owned())
}

/// The middleware in front of every route: authenticates, checks the role against
/// [`needed_role`], puts the [`Caller`] in the request's extensions.
pub(crate) async fn authenticate(
    State(auth): State<HttpAuth>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let Some(needed) = needed_role(request.method(), &path) else {
        return next.run(request).await;
    };
    let caller = match caller(&auth, request.headers(), &path).await {
        Ok(Some(caller)) => caller,
        // A bearer token for a route that checks its own.
        Ok(None) => return next.run(request).await,
        Err(refusal) => return refuse(&auth, refusal, &request),
    };
    if caller.role < needed {
        let refusal = Refusal::forbidden(format!(
            "{} may not {} {path}: that needs the role {} or higher",
            match &caller.username {
                Some(username) => format!("account {username:?} (role {})", caller.role.as_str()),
                None => format!("an anonymous caller (role {})", caller.role.as_str()),
            },
            request.method(),
            needed.as_str()
        ));
        return refuse(&auth, refusal, &request);
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

fn refuse(auth: &HttpAuth, refusal: Refusal, request: &Request) -> Response {
    auth.count(&refusal);
    tracing::debug!(status = %refusal.status, path = %request.uri().path(), reason = %refusal.message, "HTTP request refused");
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or("/", |value| value.as_str());
    refusal.into_response(request.headers(), path_and_query)
}

/// The caller of a request; `Ok(None)`: an unknown bearer token on a path that checks its own.
async fn caller(
    auth: &HttpAuth,
    headers: &HeaderMap,
    path: &str,
) -> Result<Option<Caller>, Refusal> {
    match credentials(headers) {
        Credentials::Basic { username, password } => {
            auth.verify(&username, &password).await?.caller().map(Some)
        }
        Credentials::Bearer(token) => match auth.session(&token) {
            Some(caller) => Ok(Some(caller)),
            None if OWN_BEARER_PATHS
                .iter()
                .any(|pattern| path_matches(pattern, path)) =>
            {
                Ok(None)
            }
            None => Err(Refusal::unauthenticated(
                "unknown or expired token: log in again (POST /api/v1/login)",
            )),
        },
        Credentials::Cookie(token) => match auth.session(&token) {
            Some(caller) => Ok(Some(caller)),
            // A stale cookie is no credential: as if none was sent.
            None => auth.anonymous().map(Some).ok_or_else(|| {
                Refusal::unauthenticated("the session expired: log in again (/login)")
            }),
        },
        Credentials::Malformed => Err(Refusal::unauthenticated(
            "malformed Authorization header: use `Basic base64(user:password)` or `Bearer TOKEN`",
        )),
        Credentials::None => auth.anonymous().map(Some).ok_or_else(|| {
            Refusal::unauthenticated(
                "this endpoint needs an account: Authorization: Basic or Bearer (a token from POST /api/v1/login), or log in at /login",
            )
        }),
    }
}

/// `POST /api/v1/login`: `{"username": ..., "password": ...}` (JSON) or the `/login` form
/// (`application/x-www-form-urlencoded`, with `next`). JSON answers `{"token", "username",
/// "role", "expires_in_s"}`; the form is redirected to `next` (or `/`). Both set the session
/// cookie.
pub(crate) async fn login(State(auth): State<HttpAuth>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    let Ok(body) = to_bytes(body, MAX_LOGIN_BODY).await else {
        return bad_request("the login body is larger than 16 KiB");
    };
    let attempt = if form {
        LoginAttempt::from_form(&body)
    } else {
        serde_json::from_slice::<LoginAttempt>(&body).map_err(|err| err.to_string())
    };
    let attempt = match attempt {
        Ok(attempt) => attempt,
        Err(reason) => {
            return bad_request(&format!(
                "send {{\"username\": ..., \"password\": ...}} as JSON or the /login form: {reason}"
            ));
        }
    };
    let caller = match auth
        .verify(&attempt.username, attempt.password.as_bytes())
        .await
        .and_then(|account| account.caller())
    {
        Ok(caller) => caller,
        Err(refusal) => {
            auth.count(&refusal);
            tracing::info!(username = %attempt.username, reason = %refusal.message, "HTTP login refused");
            if form {
                return login_page(
                    Some(&refusal.message),
                    attempt.next.as_deref(),
                    refusal.status,
                );
            }
            return refusal.into_response(&HeaderMap::new(), "/");
        }
    };
    let ttl = auth.inner.config.session_ttl;
    let role = caller.role;
    let username = attempt.username.clone();
    let token = auth.open_session(caller);
    let cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        ttl.as_secs()
    );
    tracing::info!(%username, role = role.as_str(), "HTTP login");
    if form {
        return redirect(&safe_next(attempt.next.as_deref()), Some(cookie));
    }
    let mut response = axum::Json(json!({
        "token": token,
        "username": username,
        "role": role,
        "expires_in_s": ttl.as_secs(),
    }))
    .into_response();
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// `POST /api/v1/logout`: ends the session of the bearer token or cookie presented (204) and
/// clears the cookie.
pub(crate) async fn logout(State(auth): State<HttpAuth>, headers: HeaderMap) -> Response {
    let token = match credentials(&headers) {
        Credentials::Bearer(token) | Credentials::Cookie(token) => Some(token),
        _ => session_cookie(&headers),
    };
    if let Some(token) = token {
        auth.close_session(&token);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("uns_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

/// `GET /login`: the login form (plain HTML, no script), posting to `/api/v1/login`.
pub(crate) async fn login_form(request: Request<Body>) -> Response {
    let next = request.uri().query().and_then(|query| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == "next")
            .map(|(_, value)| value.into_owned())
    });
    login_page(None, next.as_deref(), StatusCode::OK)
}

fn login_page(error: Option<&str>, next: Option<&str>, status: StatusCode) -> Response {
    let error = error.map_or_else(String::new, |error| {
        format!("<p class=\"error\">{}</p>", html_escape(error))
    });
    let next = html_escape(&safe_next(next));
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>UNS login</title><style>body{{font-family:sans-serif;max-width:22em;margin:4em auto}}\
         label{{display:block;margin:.8em 0}}input{{width:100%;padding:.3em}}.error{{color:#b00}}</style>\
         </head><body><h1>UNS login</h1>{error}\
         <form method=\"post\" action=\"/api/v1/login\">\
         <label>Username <input name=\"username\" autocomplete=\"username\" required autofocus></label>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <input type=\"hidden\" name=\"next\" value=\"{next}\">\
         <button type=\"submit\">Log in</button></form></body></html>\n"
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        page,
    )
        .into_response()
}

/// Where to go after the login: a local path only (no `//host` or `https://...`: no open
/// redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(next) if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') => {
            next.to_owned()
        }
        _ => "/".to_owned(),
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn bad_request(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": message })),
    )
        .into_response()
}

#[derive(Deserialize)]
struct LoginAttempt {
    username: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
}

impl LoginAttempt {
    fn from_form(body: &[u8]) -> Result<Self, String> {
        let mut username = None;
        let mut password = None;
        let mut next = None;
        for (key, value) in url::form_urlencoded::parse(body) {
            match key.as_ref() {
                "username" => username = Some(value.into_owned()),
                "password" => password = Some(value.into_owned()),
                "next" => next = Some(value.into_owned()),
                _ => {}
            }
        }
        match (username, password) {
            (Some(username), Some(password)) => Ok(Self {
                username,
                password,
                next,
            }),
            _ => Err("the form needs username and password".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_needed(method: Method, path: &str, expected: Option<HttpRole>) {
        assert_eq!(needed_role(&method, path), expected, "{method} {path}");
    }

    #[test]
    fn each_path_needs_its_role() {
        check_needed(Method::GET, "/healthz", None);
        check_needed(Method::POST, "/api/v1/login", None);
        check_needed(Method::GET, "/login", None);
        check_needed(Method::GET, "/metrics", Some(HttpRole::Viewer));
        check_needed(Method::GET, "/", Some(HttpRole::Viewer));
        check_needed(Method::HEAD, "/api/v1/oee", Some(HttpRole::Viewer));
        check_needed(
            Method::POST,
            "/api/v1/work-orders/wo-1/start",
            Some(HttpRole::Operator),
        );
        check_needed(Method::POST, "/api/v1/lots", Some(HttpRole::Operator));
        check_needed(
            Method::POST,
            "/api/v1/lots/L1/consume",
            Some(HttpRole::Operator),
        );
        check_needed(
            Method::POST,
            "/api/v1/dead-letters/7/replay",
            Some(HttpRole::Operator),
        );
        check_needed(
            Method::POST,
            "/api/v1/console/publish",
            Some(HttpRole::Operator),
        );
        check_needed(Method::POST, "/api/v1/console", Some(HttpRole::Admin));
        check_needed(
            Method::POST,
            "/api/v1/production-orders",
            Some(HttpRole::Admin),
        );
        check_needed(
            Method::POST,
            "/api/v1/work-orders/wo-1",
            Some(HttpRole::Admin),
        );
        check_needed(
            Method::DELETE,
            "/api/v1/work-orders/wo-1/start",
            Some(HttpRole::Admin),
        );
        check_needed(
            Method::POST,
            "/api/v1/work-orders//start",
            Some(HttpRole::Admin),
        );
    }

    #[test]
    fn loopback_is_told_from_the_network() {
        let check = |addr: &str, expected: bool| {
            let addr: SocketAddr = addr.parse().expect("test addresses are valid");
            assert_eq!(is_loopback(addr), expected, "{addr}");
        };
        check("127.0.0.1:8080", true);
        check("127.0.0.2:8080", true);
        check("[::1]:8080", true);
        check("[::ffff:127.0.0.1]:8080", true);
        check("0.0.0.0:8080", false);
        check("[::]:8080", false);
        check("10.0.0.5:8080", false);
        check("[::ffff:10.0.0.5]:8080", false);
    }

    fn account(name: &str, role: Option<HttpRole>) -> HttpAccount {
        let check: PasswordCheck = Arc::new(|password| password == b"pw");
        match role {
            Some(role) => HttpAccount::new(name, role, check),
            None => HttpAccount::without_access(name, "an edge account", check),
        }
    }

    #[test]
    fn a_network_bind_needs_an_http_account() {
        let network: SocketAddr = "0.0.0.0:8080".parse().expect("valid");
        let loopback: SocketAddr = "127.0.0.1:8080".parse().expect("valid");
        let none = HttpAuth::default();
        assert_eq!(none.check_listen(loopback), Ok(()));
        assert_eq!(
            none.check_listen(network),
            Err(HttpAuthError::AnonymousOnNetwork { addr: network })
        );
        let machines_only = HttpAuth::new(vec![account("line-1", None)], HttpAuthConfig::default());
        assert!(machines_only.check_listen(network).is_err());
        let viewer = HttpAuth::new(
            vec![account("v", Some(HttpRole::Viewer))],
            HttpAuthConfig::default(),
        );
        assert_eq!(viewer.check_listen(network), Ok(()));
        assert!(viewer.required_on(network));
        assert!(!viewer.required_on(loopback));
        let anonymous = HttpAuth::new(
            Vec::new(),
            HttpAuthConfig {
                allow_anonymous: true,
                ..HttpAuthConfig::default()
            },
        );
        assert_eq!(anonymous.check_listen(network), Ok(()));
        let always = HttpAuth::new(
            Vec::new(),
            HttpAuthConfig {
                require_auth: RequireAuth::Always,
                ..HttpAuthConfig::default()
            },
        );
        assert_eq!(
            always.check_listen(loopback),
            Err(HttpAuthError::AlwaysWithoutAccounts)
        );
        let message = none.check_listen(network).expect_err("refused").to_string();
        assert!(message.contains("allow_anonymous = true"), "{message}");
        assert!(message.contains("127.0.0.1"), "{message}");
    }

    #[test]
    fn next_stays_on_this_server() {
        assert_eq!(safe_next(Some("/api/v1/oee?x=1")), "/api/v1/oee?x=1");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }
}

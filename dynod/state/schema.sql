-- dynod state.  Times are UNIX seconds (REAL); JSON columns hold objects.
CREATE TABLE IF NOT EXISTS apps (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    -- Host uid (and gid) the app's dynos run as: Config.app_uid(uid_index).
    uid_index INTEGER NOT NULL UNIQUE,
    config TEXT NOT NULL DEFAULT '{}',
    settings TEXT NOT NULL DEFAULT '{}',
    maintenance INTEGER NOT NULL DEFAULT 0,
    current_release INTEGER,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS releases (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    description TEXT NOT NULL,
    status TEXT NOT NULL,
    slug_digest TEXT,
    config TEXT NOT NULL,
    process_types TEXT NOT NULL DEFAULT '{}',
    user TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (app_id, version)
);

CREATE TABLE IF NOT EXISTS builds (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    buildpack TEXT,
    slug_digest TEXT,
    release_version INTEGER,
    description TEXT NOT NULL DEFAULT '',
    user TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS formation (
    app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    type TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    size TEXT NOT NULL,
    PRIMARY KEY (app_id, type)
);

-- Sequence numbers that must never be reused (release versions survive
-- deletes of release rows; app uid indexes are never handed out twice).
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);

-- API tokens for the TCP listener (and the heroku CLI's HEROKU_API_KEY).  Only a
-- SHA-256 of each token is kept: the token itself is shown once, at creation.
CREATE TABLE IF NOT EXISTS authorizations (
    id TEXT PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);

-- Custom domains: the router answers on each for its app.  ACM status columns
-- follow Heroku's (NULL = waiting; pending, verified, cert issued, failing, failed).
CREATE TABLE IF NOT EXISTS domains (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    hostname TEXT NOT NULL UNIQUE,
    acm_status TEXT,
    acm_status_reason TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);

-- TLS certificates: uploaded (sni endpoints) or obtained by ACME.  chain and
-- key are PEM; domains is a JSON list of the names the certificate covers.
CREATE TABLE IF NOT EXISTS certificates (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    chain TEXT NOT NULL,
    key TEXT NOT NULL,
    domains TEXT NOT NULL,
    not_before REAL NOT NULL,
    not_after REAL NOT NULL,
    -- Smallest expiry warning (in days) already logged for this certificate.
    warned_days INTEGER,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);

-- Apps with automatic certificate management on.
CREATE TABLE IF NOT EXISTS acm_apps (
    app_id TEXT PRIMARY KEY REFERENCES apps(id) ON DELETE CASCADE,
    enabled_at REAL NOT NULL
);

-- Log drains: where an app's log stream is shipped.  cursor_seq/cursor_offset
-- is the drain's place in the app's on-disk history (what it has delivered).
CREATE TABLE IF NOT EXISTS drains (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    token TEXT NOT NULL UNIQUE,
    cursor_seq INTEGER NOT NULL DEFAULT 0,
    cursor_offset INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (app_id, url)
);

-- App features (features:enable NAME); a missing row means the default.
CREATE TABLE IF NOT EXISTS app_features (
    app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (app_id, name)
);

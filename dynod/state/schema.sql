-- dynod state.  Times are UNIX seconds (REAL); JSON columns hold objects.
CREATE TABLE IF NOT EXISTS apps (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    -- Host uid (and gid) the app's dynos run as: config.uid_base + uid_index.
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

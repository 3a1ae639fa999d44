package configs

// Store chooses the storage backend:
//
//	store:
//	  backend: postgres            # or badger (the default, uses data_dir)
//	  dsn: env:SAFECLOSE_PG_DSN    # a secret reference like every other secret
//	  max_conns: 16                # optional
type Store struct {
	Backend  string    `yaml:"backend"`   // badger (default) or postgres
	DSN      SecretRef `yaml:"dsn"`       // postgres only: the connection string, by reference
	MaxConns int       `yaml:"max_conns"` // postgres only: pool size; default 16
}

// Store backends.
const (
	BackendBadger   = "badger"
	BackendPostgres = "postgres"
)

// validate reports problems under "store.".
func (s Store) validate(add func(path, format string, a ...any)) {
	switch s.Backend {
	case BackendBadger:
		if s.DSN != "" {
			add("store.dsn", "only for backend: postgres")
		}
	case BackendPostgres:
		if s.DSN == "" {
			add("store.dsn", "required for backend: postgres (e.g. env:SAFECLOSE_PG_DSN)")
		} else if err := s.DSN.check(); err != nil {
			add("store.dsn", "%v", err)
		}
	default:
		add("store.backend", "must be badger or postgres")
	}
	if s.MaxConns < 0 || s.MaxConns > 1000 {
		add("store.max_conns", "must be in 0..1000 (zero means 16)")
	}
}

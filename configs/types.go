package configs

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written as a Go duration string ("30s", "5m").
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// SecretRef names where a secret lives: "env:NAME" or "file:/path".
// The config file never holds the secret itself.
type SecretRef string

// ErrSecretUnset reports a reference to an environment variable that is not set
// or a file that is empty.
var ErrSecretUnset = errors.New("configs: secret not set")

func (r SecretRef) check() error {
	s := string(r)
	switch {
	case s == "":
		return nil
	case strings.HasPrefix(s, "env:") && len(s) > 4:
		return nil
	case strings.HasPrefix(s, "file:") && len(s) > 5:
		return nil
	}
	return errors.New(`must be "env:NAME" or "file:PATH" (secrets are never written inline)`)
}

// Resolve reads the secret. An empty reference resolves to an empty Secret.
func (r SecretRef) Resolve() (Secret, error) {
	s := string(r)
	switch {
	case s == "":
		return Secret{}, nil
	case strings.HasPrefix(s, "env:"):
		v, ok := os.LookupEnv(s[4:])
		if !ok || v == "" {
			return Secret{}, fmt.Errorf("%w: environment variable %s", ErrSecretUnset, s[4:])
		}
		return Secret{b: []byte(v)}, nil
	case strings.HasPrefix(s, "file:"):
		b, err := os.ReadFile(s[5:])
		if err != nil {
			return Secret{}, fmt.Errorf("configs: read secret file: %w", err)
		}
		b = []byte(strings.TrimSpace(string(b)))
		if len(b) == 0 {
			return Secret{}, fmt.Errorf("%w: file %s is empty", ErrSecretUnset, s[5:])
		}
		return Secret{b: b}, nil
	}
	return Secret{}, fmt.Errorf("configs: bad secret reference %q", s)
}

// Secret holds secret bytes. It prints, logs and marshals as REDACTED.
type Secret struct{ b []byte }

// NewSecret wraps b (tests and callers that already hold the bytes).
func NewSecret(b []byte) Secret { return Secret{b: b} }

// Bytes returns the secret. Callers must not log it.
func (s Secret) Bytes() []byte { return s.b }

// Reveal returns the secret as a string. Callers must not log it.
func (s Secret) Reveal() string { return string(s.b) }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return len(s.b) == 0 }

func (Secret) String() string               { return "REDACTED" }
func (Secret) GoString() string             { return "REDACTED" }
func (Secret) LogValue() slog.Value         { return slog.StringValue("REDACTED") }
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"REDACTED"`), nil }

package edge

import (
	"errors"
	"fmt"
	"path"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Claims are the token claims of PROTOCOL.md.
type Claims struct {
	jwt.RegisteredClaims
	// Groups are glob patterns (path.Match syntax) of joinable group IDs.
	Groups []string `json:"groups"`
}

// Identity is an authenticated user.
type Identity struct {
	User    string
	Groups  []string
	Expires time.Time
}

// MayJoin reports whether a token pattern matches group.
func (id Identity) MayJoin(group string) bool {
	for _, p := range id.Groups {
		if ok, err := path.Match(p, group); err == nil && ok {
			return true
		}
	}
	return false
}

// Verifier checks HS256 tokens against a shared secret.
type Verifier struct {
	secret []byte
	parser *jwt.Parser
}

// NewVerifier returns a verifier for secret.
func NewVerifier(secret []byte) (*Verifier, error) {
	if len(secret) == 0 {
		return nil, errors.New("auth.secret must not be empty")
	}
	return &Verifier{
		secret: secret,
		parser: jwt.NewParser(
			// Only HS256: a token naming another algorithm ("none",
			// RS256 with our secret as a key) is refused.
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithExpirationRequired(),
			jwt.WithLeeway(5*time.Second),
		),
	}, nil
}

// Verify parses and checks a token.
func (v *Verifier) Verify(token string) (Identity, error) {
	var c Claims
	if len(token) > 8192 {
		return Identity{}, errors.New("token too long")
	}
	_, err := v.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return v.secret, nil })
	if err != nil {
		return Identity{}, fmt.Errorf("verify token: %w", err)
	}
	if !ValidUserID(c.Subject) {
		return Identity{}, errors.New("token sub is not a valid user ID")
	}
	for _, p := range c.Groups {
		if _, err := path.Match(p, ""); err != nil {
			return Identity{}, fmt.Errorf("token group pattern %q: %w", p, err)
		}
	}
	id := Identity{User: c.Subject, Groups: c.Groups}
	if c.ExpiresAt != nil {
		id.Expires = c.ExpiresAt.Time
	}
	return id, nil
}

// Mint signs a token for user with the given group patterns and lifetime.
func Mint(secret []byte, user string, groups []string, ttl time.Duration, now time.Time) (string, error) {
	if !ValidUserID(user) {
		return "", fmt.Errorf("user %q is not a valid user ID (1-128 of A-Z a-z 0-9 . _ - : @ +)", user)
	}
	if ttl <= 0 {
		return "", fmt.Errorf("ttl %s must be positive", ttl)
	}
	for _, p := range groups {
		if _, err := path.Match(p, ""); err != nil {
			return "", fmt.Errorf("group pattern %q: %w", p, err)
		}
	}
	c := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   user,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		Groups: groups,
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}

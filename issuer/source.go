package issuer

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// APIServerSource reads the API server's discovery endpoints over an
// authenticated client (rest.HTTPClientFor). The JWKS is served as
// application/jwk-set+json, which the API server refuses to a client that
// accepts only application/json (as client-go's REST client does), hence a
// plain GET with an Accept header of its own.
type APIServerSource struct {
	Client *http.Client
	// Host is the API server's base URL (rest.Config.Host).
	Host string
}

// GetRaw returns the body of a 200 answer for path.
func (s *APIServerSource) GetRaw(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(s.Host, "/")+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	res, err := s.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxDocumentBytes+1))
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s answered %s: %.200s", path, res.Status, b)
	}
	return b, nil
}

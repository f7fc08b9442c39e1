package bare

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

var body = []byte(`{"AccessKeyId":"ASIAEXAMPLE"}`)

func TestHandler(t *testing.T) {
	for _, method := range []string{http.MethodGet, http.MethodPut} {
		t.Run(method+" gets the fixed JSON body", func(t *testing.T) {
			rec := httptest.NewRecorder()
			NewHandler(body).ServeHTTP(rec, httptest.NewRequest(method, "/any/path", nil))
			if rec.Code != http.StatusOK {
				t.Errorf("status %d", rec.Code)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if cl := rec.Header().Get("Content-Length"); cl != "29" {
				t.Errorf("Content-Length %q", cl)
			}
			if got := rec.Body.String(); got != string(body) {
				t.Errorf("body %q", got)
			}
		})
	}
}

func get(t *testing.T, url string) error {
	t.Helper()
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err == nil && string(got) != string(body) {
		t.Errorf("body %q", got)
	}
	return err
}

func TestServe(t *testing.T) {
	t.Run("serves until stop is called, and stop can be called twice", func(t *testing.T) {
		addr, stop, err := Serve(t.Context(), "127.0.0.1:0", body)
		if err != nil {
			t.Fatal(err)
		}
		url := "http://" + addr.String() + "/"
		if err := get(t, url); err != nil {
			t.Fatalf("before stop: %v", err)
		}
		stop()
		stop()
		if err := get(t, url); err == nil {
			t.Error("still serving after stop")
		}
	})
	t.Run("cancelling ctx stops the server", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		addr, stop, err := Serve(ctx, "127.0.0.1:0", body)
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
		cancel()
		url := "http://" + addr.String() + "/"
		deadline := time.Now().Add(5 * time.Second)
		for get(t, url) == nil {
			if time.Now().After(deadline) {
				t.Fatal("still serving 5s after ctx was cancelled")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	t.Run("a bad address is an error", func(t *testing.T) {
		if _, _, err := Serve(t.Context(), "127.0.0.1:notaport", body); err == nil {
			t.Error("Serve accepted a bad address")
		}
	})
}

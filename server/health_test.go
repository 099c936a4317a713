package server_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/ferryhq/ferry/server"
	"github.com/ferryhq/ferry/transfer"
)

// /readyz says whether storage answers.
func TestReadyz(t *testing.T) {
	e := newFileEnv(t, stores(t)["disk"](t), transfer.Config{}, server.Config{})
	res, err := http.Get(e.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]string
	_ = json.NewDecoder(res.Body).Decode(&body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || body["status"] != "ready" || body["storage"] != "ok" {
		t.Fatalf("/readyz = %d %v", res.StatusCode, body)
	}
}

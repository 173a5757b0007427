package camera

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

var errNoBearer = errors.New("a camera bearer token is required")

// Bearer authenticates an HTTP request as the camera its path names (the
// {camera} wildcard) by the request's bearer token. Another camera's
// secret fails like a wrong one: the path names the camera, the secret
// must be that camera's. The error's text is the reason to answer with:
// it never holds the secret.
func Bearer(r *http.Request, a Authenticator) (Camera, error) {
	camID := r.PathValue("camera")
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		return Camera{}, errNoBearer
	}
	cam, err := a.Authenticate(r.Context(), camID, strings.TrimSpace(token))
	if err != nil {
		return Camera{}, errors.New("bad credentials for camera " + SafeID(camID))
	}
	return cam, nil
}

// Refuse answers a refused camera request in plain text; a 401 carries the
// bearer challenge. why never holds a secret.
func Refuse(w http.ResponseWriter, code int, why string) {
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="camvault"`)
	}
	http.Error(w, why, code)
}

// SafeID keeps an attacker-chosen string (a camera id as claimed, or any
// other client input) short and printable in logs and answers.
func SafeID(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return fmt.Sprintf("%q", s)
}

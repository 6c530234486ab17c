package admin_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"

	"github.com/relayd/relayd/admin"
)

func Example() {
	var ready atomic.Bool // set once listeners are bound, cleared when draining
	srv, err := admin.New(admin.Config{Listen: "127.0.0.1:0", Version: "v0.0.0"},
		admin.Sources{Ready: ready.Load, LogDropped: func() uint64 { return 0 }})
	if err != nil {
		panic(err)
	}
	if err := srv.Start(); err != nil {
		panic(err)
	}
	defer srv.Shutdown(context.Background())

	tr := &http.Transport{DisableKeepAlives: true}
	probe := func() {
		resp, err := (&http.Client{Transport: tr}).Get("http://" + srv.Addr().String() + "/readyz")
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		fmt.Printf("%d %s", resp.StatusCode, body)
	}
	probe()
	ready.Store(true)
	probe()
	// Output:
	// 503 not ready
	// 200 ready
}

package loadtest_test

import (
	"context"
	"fmt"

	"github.com/relayd/relayd/loadtest"
)

// Run 100 rr sessions against an in-process echo sink, smtp-source style
// (one connect outstanding at a time), and read the exact counters.
func Example() {
	ctx := context.Background()
	sink, err := loadtest.StartSink(ctx, loadtest.SinkConfig{Listen: "127.0.0.1:0", Mode: loadtest.SinkEcho})
	if err != nil {
		panic(err)
	}
	defer sink.Close()

	res, err := loadtest.Run(ctx, loadtest.LoadConfig{
		Target:              sink.Addr(),
		Mode:                loadtest.ModeRR,
		Sessions:            100,
		Concurrency:         10,
		Size:                64,
		MaxInflightConnects: 1,
	})
	if err != nil {
		panic(err)
	}
	st, err := sink.WaitIdle(ctx, 100)
	if err != nil {
		panic(err)
	}
	fmt.Println("sessions", res.Sessions, "errors", res.ErrorsTotal, "max connects in flight", res.MaxInflightConnectsSeen)
	fmt.Println("sink accepted", st.Accepted, "bytes in", st.BytesIn, "bytes out", st.BytesOut)
	// Output:
	// sessions 100 errors 0 max connects in flight 1
	// sink accepted 100 bytes in 6400 bytes out 6400
}

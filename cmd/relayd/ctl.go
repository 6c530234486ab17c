package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/relayd/relayd/admin"
)

// ctlTarget is where `relayd ctl` sends its requests: the control socket,
// or the admin endpoint over TCP with a token.
type ctlTarget struct {
	socket, addr, token string
	asJSON              bool
}

// defaultSocket is the control socket `relayd ctl` tries without
// --socket: the unit's runtime directory.
func defaultSocket() string {
	if rd, _, _ := strings.Cut(os.Getenv("RUNTIME_DIRECTORY"), ":"); rd != "" {
		return filepath.Join(rd, "admin.sock")
	}
	return "/run/relayd/admin.sock"
}

func (c *ctlTarget) do(ctx context.Context, method, path string, form url.Values, out any) error {
	if c.addr != "" {
		cl := &http.Client{Timeout: 30 * time.Second}
		return admin.Do(ctx, cl, method, "http://"+c.addr+path, c.token, form, out)
	}
	return admin.UnixDo(ctx, c.socket, method, path, form, out)
}

// newCtlCmd is `relayd ctl`: the operator's client of the control API.
func newCtlCmd() *cobra.Command {
	t := &ctlTarget{}
	cmd := &cobra.Command{
		Use:   "ctl",
		Short: "Look at and change a running relayd: upstreams, sessions, drain, disable, enable, close",
		Long: `Talk to a running relayd's control API: over its control socket (admin.socket,
mode 0600: run as relayd's user or root), or over admin.listen with --admin
and --token (admin.token; state changes over TCP need it).

  relayd ctl upstreams [--listener NAME]
  relayd ctl sessions  [--listener NAME] [--upstream IP:PORT] [--client PREFIX] [--offset N] [--limit N]
  relayd ctl drain   LISTENER UPSTREAM    no new sessions; open ones finish
  relayd ctl disable LISTENER UPSTREAM    the same, for maintenance: active checks pause
  relayd ctl enable  LISTENER UPSTREAM    back in rotation
  relayd ctl close ID [--worker N]        reset one session (ID as ctl sessions shows it)
  relayd ctl close [--listener NAME] [--upstream IP:PORT] [--client PREFIX]
                                          reset every session that matches

A change applies at once, to every worker, and lasts until changed again or
relayd restarts (a reload keeps it).`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&t.socket, "socket", defaultSocket(), "the control socket")
	pf.StringVar(&t.addr, "admin", "", "host:port of admin.listen instead of the socket")
	pf.StringVar(&t.token, "token", os.Getenv("RELAYD_ADMIN_TOKEN"), "admin.token for --admin (default $RELAYD_ADMIN_TOKEN)")
	pf.BoolVar(&t.asJSON, "json", false, "print the answer as JSON")

	var listener string
	ups := &cobra.Command{
		Use:   "upstreams",
		Short: "List the upstreams: state, sessions, connects, failures",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := "/upstreams"
			if listener != "" {
				path += "?listener=" + url.QueryEscape(listener)
			}
			var list []admin.UpstreamInfo
			if err := t.do(cmd.Context(), "GET", path, nil, &list); err != nil {
				return ctlError(err)
			}
			if t.asJSON {
				return printJSON(cmd.OutOrStdout(), list)
			}
			return printUpstreams(cmd.OutOrStdout(), list)
		},
	}
	ups.Flags().StringVar(&listener, "listener", "", "only this listener's")
	cmd.AddCommand(ups)
	var sq struct {
		listener, upstream, client string
		offset, limit              int
	}
	sess := &cobra.Command{
		Use:   "sessions",
		Short: "List open sessions (oldest first): client, upstream, state, age, idle, bytes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := url.Values{"offset": {fmt.Sprint(sq.offset)}, "limit": {fmt.Sprint(sq.limit)}}
			for k, x := range map[string]string{"listener": sq.listener, "upstream": sq.upstream, "client": sq.client} {
				if x != "" {
					v.Set(k, x)
				}
			}
			var p admin.SessionsPage
			if err := t.do(cmd.Context(), "GET", "/sessions?"+v.Encode(), nil, &p); err != nil {
				return ctlError(err)
			}
			if t.asJSON {
				return printJSON(cmd.OutOrStdout(), p)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tLISTENER\tCLIENT\tUPSTREAM\tSTATE\tAGE\tIDLE\tUP\tDOWN\tWORKER")
			for _, s := range p.Sessions {
				fmt.Fprintf(tw, "%x\t%s\t%s\t%s\t%s\t%v\t%v\t%d\t%d\t%d\n", s.ID, s.Listener, s.Client, orDash(s.Upstream), s.State,
					time.Duration(s.AgeMS*1e6).Round(time.Millisecond), time.Duration(s.IdleMS*1e6).Round(time.Millisecond), s.BytesUp, s.BytesDown, s.Worker)
			}
			fmt.Fprintf(tw, "%d of %d sessions from %d\n", len(p.Sessions), p.Total, p.Offset)
			return tw.Flush()
		},
	}
	sf := sess.Flags()
	sf.StringVar(&sq.listener, "listener", "", "only this listener's")
	sf.StringVar(&sq.upstream, "upstream", "", "only those connected to this upstream (ip:port)")
	sf.StringVar(&sq.client, "client", "", "only clients in this address or prefix")
	sf.IntVar(&sq.offset, "offset", 0, "skip this many (oldest first)")
	sf.IntVar(&sq.limit, "limit", 100, "at most this many (≤ 1000)")
	cmd.AddCommand(sess)
	var cq struct {
		listener, upstream, client string
		worker                     int
	}
	closeCmd := &cobra.Command{
		Use:   "close [ID]",
		Short: "Close (reset both sides of) one session, or every session matching the filters",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v := url.Values{}
			if len(args) == 1 {
				id, err := strconv.ParseUint(strings.TrimPrefix(args[0], "0x"), 16, 64)
				if err != nil {
					return fmt.Errorf("session id %q: the hexadecimal ID of ctl sessions", args[0])
				}
				v.Set("id", strconv.FormatUint(id, 10))
			}
			for k, x := range map[string]string{"listener": cq.listener, "upstream": cq.upstream, "client": cq.client} {
				if x != "" {
					v.Set(k, x)
				}
			}
			if len(v) == 0 {
				return errors.New("close what? give a session ID, --listener, --upstream or --client")
			}
			if cq.worker >= 0 {
				v.Set("worker", strconv.Itoa(cq.worker))
			}
			var n admin.Closed
			if err := t.do(cmd.Context(), "POST", "/sessions/close", v, &n); err != nil {
				return ctlError(err)
			}
			if t.asJSON {
				return printJSON(cmd.OutOrStdout(), n)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d sessions closed\n", n.Closed)
			return nil
		},
	}
	cf := closeCmd.Flags()
	cf.StringVar(&cq.listener, "listener", "", "only this listener's")
	cf.StringVar(&cq.upstream, "upstream", "", "only those connected to this upstream (ip:port)")
	cf.StringVar(&cq.client, "client", "", "only clients in this address or prefix")
	cf.IntVar(&cq.worker, "worker", -1, "the worker the session ID belongs to (WORKER of ctl sessions, with processes: N)")
	cmd.AddCommand(closeCmd)
	for _, verb := range []string{"drain", "disable", "enable"} {
		cmd.AddCommand(&cobra.Command{
			Use:   verb + " LISTENER UPSTREAM",
			Short: map[string]string{"drain": "Take an upstream out of rotation; its sessions finish", "disable": "Take an upstream out for maintenance (its checks pause)", "enable": "Put an upstream back in rotation"}[verb],
			Args:  cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				var ch admin.StateChange
				form := url.Values{"listener": {args[0]}, "upstream": {args[1]}, "state": {verb}}
				if err := t.do(cmd.Context(), "POST", "/upstreams/state", form, &ch); err != nil {
					return ctlError(err)
				}
				if t.asJSON {
					return printJSON(cmd.OutOrStdout(), ch)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s: %s (was %s)\n", ch.Listener, ch.Upstream, ch.State, ch.Previous)
				return nil
			},
		})
	}
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ctlError makes a refusal a one-line error (exit 1).
func ctlError(err error) error {
	var se *admin.StatusError
	if errors.As(err, &se) {
		return fmt.Errorf("relayd answered %d: %s", se.Code, se.Msg)
	}
	return err
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printUpstreams(w io.Writer, list []admin.UpstreamInfo) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LISTENER\tUPSTREAM\tSTATE\tSESSIONS\tCONNECTING\tQUEUED\tLIMIT\tCONNECTED\tFAILURES")
	for _, u := range list {
		var fails []string
		for cl, n := range u.Failures {
			if n > 0 {
				fails = append(fails, fmt.Sprintf("%s=%d", cl, n))
			}
		}
		sort.Strings(fails)
		f := strings.Join(fails, " ")
		if f == "" {
			f = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", u.Listener, u.Upstream, u.State, u.SessionsActive,
			u.ConnectsInflight, u.ConnectsQueued, u.ConnectLimit, u.Connected, f)
	}
	return tw.Flush()
}

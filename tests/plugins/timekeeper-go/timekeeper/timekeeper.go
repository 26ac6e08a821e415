// Package timekeeper drives timers and expiries from its input: the same behaviour as
// tests/plugins/timekeeper (Rust), host call for host call. Each record value is one
// command:
//
//   - `timer KEY event|processing AT` sets a timer (`AT` absolute, or `+MS` after the
//     batch's processing time); `cancel KEY event|processing` cancels it;
//   - `set KEY VALUE`, `delete KEY`, `setx KEY VALUE EXPIRY`, `expire KEY EXPIRY`,
//     `persist KEY`, where EXPIRY is `after-ms MS` or `at-watermark T`;
//   - `rearm KEY MS`: when the timer KEY fires, it sets it again MS later (once);
//   - `get KEY` emits `got VALUE` (or `got none`), `incr KEY N` emits `incr TOTAL` (key =
//     KEY; a failed `state.incr` is a fatal error with the host's message);
//   - `emit KEY VALUE [NAME=VALUE | NAME]...` emits a record with those headers (a bare
//     NAME is a null header value);
//   - `fail retryable|fatal MESSAGE...` and `fail poison INDEX MESSAGE...` fail the batch
//     with that error.
//
// Config: `tag=T` adds the header `tag: T` to every emit; any other key fails `init`.
//
// State writes are buffered into one `state.apply` at the end of the batch, except that
// `timer`, `get` and `incr` first flush the writes before them. When timers fire, it
// emits one record per timer (key = timer key, value = `fired DOMAIN AT wm=WATERMARK`)
// and adds 1 to the state key `fired:KEY`.
//
// Arithmetic wraps at 64 bits like the Rust plugin's (a release build), numbers parse
// the way Rust's `str::parse` does, byte strings decode like `String::from_utf8_lossy`,
// and error messages quote like Rust's `{:?}` (table in debug_escapes.go, made from the
// one tests/plugins/gen-debug-escapes writes). Everything iterates in slice order.
//
// The export_* packages (the names the generated bindings call) hand their calls here.
package timekeeper

import (
	"fmt"
	"strconv"
	"strings"

	witTypes "go.bytecodealliance.org/pkg/wit/types"

	"wit_component/streamhost_plugin_emit"
	"wit_component/streamhost_plugin_state"
	"wit_component/streamhost_plugin_timers"
	types "wit_component/streamhost_plugin_types"
)

type (
	result      = witTypes.Result[witTypes.Unit, types.PluginError]
	pluginError = types.PluginError
)

// tag is `--config tag=T`: the value of the `tag` header on every emit, if hasTag.
var (
	tag    string
	hasTag bool
)

func ok() result { return witTypes.Ok[witTypes.Unit, pluginError](witTypes.Unit{}) }

func fail(e pluginError) result { return witTypes.Err[witTypes.Unit](e) }

func fatal(message string) *pluginError {
	e := types.MakePluginErrorFatal(message)
	return &e
}

// output is a record to emit, with the `tag` header if the config set one.
func output(key string, value string, headers []types.Header) types.OutputRecord {
	if hasTag {
		headers = append(headers, types.Header{Name: "tag", Value: witTypes.Some([]byte(tag))})
	}
	if headers == nil {
		headers = []types.Header{}
	}
	return types.OutputRecord{
		Topic:   witTypes.None[string](),
		Key:     witTypes.Some([]byte(key)),
		Value:   witTypes.Some([]byte(value)),
		Headers: headers,
	}
}

func domain(word string) (types.TimeDomain, *pluginError) {
	switch word {
	case "event":
		return types.TimeDomainEventTime, nil
	case "processing":
		return types.TimeDomainProcessingTime, nil
	}
	return 0, fatal("unknown domain " + debugQuote(word))
}

func expiry(kind, value string) (types.Expiry, *pluginError) {
	switch kind {
	case "after-ms":
		if ms, ok := parseUint(value, 64); ok {
			return types.MakeExpiryAfterMs(ms), nil
		}
	case "at-watermark":
		if t, err := strconv.ParseInt(value, 10, 64); err == nil {
			return types.MakeExpiryAtWatermark(t), nil
		}
	}
	return types.Expiry{}, fatal(fmt.Sprintf("bad expiry %s %s", kind, value))
}

// Init reads the job's `--config`, in order: tag=T; any other key is refused.
func Init(config []witTypes.Tuple2[string, string]) witTypes.Result[witTypes.Unit, string] {
	for _, kv := range config {
		switch kv.F0 {
		case "tag":
			tag, hasTag = kv.F1, true
		default:
			return witTypes.Err[witTypes.Unit](fmt.Sprintf("unknown config key %s; timekeeper knows tag", debugQuote(kv.F0)))
		}
	}
	return witTypes.Ok[witTypes.Unit, string](witTypes.Unit{})
}

// Process runs a batch's commands, one per record value.
func Process(batch types.Batch) result {
	var ops []types.StateOp
	// flush applies the ops so far (even none, as the Rust plugin does) and starts anew.
	flush := func() {
		streamhost_plugin_state.Apply(ops)
		ops = nil
	}
	for _, record := range batch.Records {
		if record.Value.IsNone() {
			continue
		}
		v := record.Value.Some()
		line := lossy(batch.Data[v.Start : v.Start+v.Len])
		words := strings.FieldsFunc(line, isSpace)
		bad := func() result { return fail(*fatal("bad command " + debugQuote(line))) }
		n := len(words)
		first := func(w ...string) bool {
			if n < len(w) {
				return false
			}
			for i := range w {
				if words[i] != w[i] {
					return false
				}
			}
			return true
		}
		switch {
		case n == 4 && words[0] == "timer":
			var at int64
			if ms, found := strings.CutPrefix(words[3], "+"); found {
				d, err := strconv.ParseInt(ms, 10, 64)
				if err != nil {
					return bad()
				}
				at = batch.ProcessingTime + d
			} else {
				var err error
				if at, err = strconv.ParseInt(words[3], 10, 64); err != nil {
					return bad()
				}
			}
			// Ops so far first: a timer due at once fires after them.
			flush()
			d, err := domain(words[2])
			if err != nil {
				return fail(*err)
			}
			streamhost_plugin_timers.Set([]types.Timer{{Key: words[1], Domain: d, At: at}})
		case n == 3 && words[0] == "cancel":
			d, err := domain(words[2])
			if err != nil {
				return fail(*err)
			}
			streamhost_plugin_timers.Cancel([]types.TimerId{{Key: words[1], Domain: d}})
		case n == 3 && words[0] == "set":
			ops = append(ops, types.MakeStateOpSet(types.KeyValue{Key: words[1], Value: []byte(words[2])}))
		case n == 2 && words[0] == "delete":
			ops = append(ops, types.MakeStateOpDelete(words[1]))
		case n == 5 && words[0] == "setx":
			e, err := expiry(words[3], words[4])
			if err != nil {
				return fail(*err)
			}
			ops = append(ops, types.MakeStateOpSetExpiring(types.ExpiringValue{Key: words[1], Value: []byte(words[2]), Expiry: e}))
		case n == 4 && words[0] == "expire":
			e, err := expiry(words[2], words[3])
			if err != nil {
				return fail(*err)
			}
			ops = append(ops, types.MakeStateOpExpire(types.KeyExpiry{Key: words[1], Expiry: e}))
		case n == 2 && words[0] == "persist":
			ops = append(ops, types.MakeStateOpPersist(words[1]))
		case n == 3 && words[0] == "rearm":
			ops = append(ops, types.MakeStateOpSet(types.KeyValue{Key: "rearm:" + words[1], Value: []byte(words[2])}))
		case n == 2 && words[0] == "get":
			flush()
			got := "none"
			if value := streamhost_plugin_state.Get(words[1]); value.IsSome() {
				got = lossy(value.Some())
			}
			streamhost_plugin_emit.Send([]types.OutputRecord{output(words[1], "got "+got, nil)})
		case n == 3 && words[0] == "incr":
			delta, err := strconv.ParseInt(words[2], 10, 64)
			if err != nil {
				return bad()
			}
			flush()
			total := streamhost_plugin_state.Incr(words[1], delta)
			if total.IsErr() {
				return fail(*fatal(total.Err()))
			}
			streamhost_plugin_emit.Send([]types.OutputRecord{output(words[1], "incr "+strconv.FormatInt(total.Ok(), 10), nil)})
		case n >= 3 && words[0] == "emit":
			headers := make([]types.Header, 0, n-3)
			for _, h := range words[3:] {
				if name, value, found := strings.Cut(h, "="); found {
					headers = append(headers, types.Header{Name: name, Value: witTypes.Some([]byte(value))})
				} else {
					headers = append(headers, types.Header{Name: h, Value: witTypes.None[[]byte]()})
				}
			}
			streamhost_plugin_emit.Send([]types.OutputRecord{output(words[1], words[2], headers)})
		case first("fail", "retryable"):
			return fail(types.MakePluginErrorRetryable(strings.Join(words[2:], " ")))
		case first("fail", "fatal"):
			return fail(types.MakePluginErrorFatal(strings.Join(words[2:], " ")))
		case n >= 3 && first("fail", "poison"):
			index, ok := parseUint(words[2], 32)
			if !ok {
				return bad()
			}
			return fail(types.MakePluginErrorPoison(types.PoisonRecord{Index: uint32(index), Message: strings.Join(words[3:], " ")}))
		default:
			return bad()
		}
	}
	streamhost_plugin_state.Apply(ops)
	return ok()
}

// OnTimers emits one record per fired timer, counts it in `fired:KEY` and sets it again
// if a `rearm` asked for that.
func OnTimers(context types.TimerContext, fired []types.Timer) result {
	wm := "none"
	if context.Watermark.IsSome() {
		wm = strconv.FormatInt(context.Watermark.Some(), 10)
	}
	rearmKeys := make([]string, len(fired))
	for i, t := range fired {
		rearmKeys[i] = "rearm:" + t.Key
	}
	rearms := streamhost_plugin_state.GetMany(rearmKeys)
	out := []types.OutputRecord{}
	ops := []types.StateOp{}
	again := []types.Timer{}
	for i := 0; i < len(fired) && i < len(rearms); i++ {
		t := fired[i]
		d := "processing"
		if t.Domain == types.TimeDomainEventTime {
			d = "event"
		}
		out = append(out, output(t.Key, fmt.Sprintf("fired %s %d wm=%s", d, t.At, wm), nil))
		ops = append(ops, types.MakeStateOpIncr(types.KeyDelta{Key: "fired:" + t.Key, Delta: 1}))
		if rearms[i].IsSome() {
			// Digits are ASCII: bytes that are not UTF-8 fail the parse, as in Rust.
			if ms, err := strconv.ParseInt(string(rearms[i].Some()), 10, 64); err == nil {
				ops = append(ops, types.MakeStateOpDelete(rearmKeys[i]))
				again = append(again, types.Timer{Key: t.Key, Domain: t.Domain, At: t.At + ms})
			}
		}
	}
	streamhost_plugin_emit.Send(out)
	streamhost_plugin_state.Apply(ops)
	streamhost_plugin_timers.Set(again)
	return ok()
}

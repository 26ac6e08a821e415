// Package export_streamhost_plugin_handler is the plugin's `handler` export: the word
// count. Each record value is decoded as UTF-8 (invalid bytes become U+FFFD), split on
// Unicode whitespace, lowercased, and 1 is added per word to the job state (key = word,
// value = count). With config `emit=true` it also emits one record per word (key = word,
// value = "1"), in order.
//
// The words of a whole batch are added up in a map and handed to the host in one
// `state.apply` call: a call into the host costs far more than a map update.
package export_streamhost_plugin_handler

import (
	witTypes "go.bytecodealliance.org/pkg/wit/types"

	"wit_component/streamhost_plugin_emit"
	"wit_component/streamhost_plugin_state"
	"wit_component/streamhost_plugin_types"
)

// EmitWords is set by `init` (config emit=true).
var EmitWords = false

var one = []byte("1")

// Process counts the words of a batch.
func Process(batch streamhost_plugin_types.Batch) witTypes.Result[witTypes.Unit, streamhost_plugin_types.PluginError] {
	counts := make(map[string]int64)
	var out []streamhost_plugin_types.OutputRecord
	var words wordScanner
	for _, record := range batch.Records {
		if record.Value.IsNone() {
			continue
		}
		span := record.Value.Some()
		words.reset(batch.Data[span.Start : span.Start+span.Len])
		for {
			word, ok := words.next()
			if !ok {
				break
			}
			// Indexing with string(word) does not allocate; only a new word is copied.
			if n, seen := counts[string(word)]; seen {
				counts[string(word)] = n + 1
			} else {
				counts[string(word)] = 1
			}
			if EmitWords {
				out = append(out, streamhost_plugin_types.OutputRecord{
					Topic: witTypes.None[string](),
					Key:   witTypes.Some(append([]byte(nil), word...)),
					Value: witTypes.Some(one),
				})
			}
		}
	}
	ops := make([]streamhost_plugin_types.StateOp, 0, len(counts))
	for word, n := range counts {
		ops = append(ops, streamhost_plugin_types.MakeStateOpIncr(streamhost_plugin_types.KeyDelta{Key: word, Delta: n}))
	}
	streamhost_plugin_state.Apply(ops)
	if len(out) > 0 {
		streamhost_plugin_emit.Send(out)
	}
	return witTypes.Ok[witTypes.Unit, streamhost_plugin_types.PluginError](witTypes.Unit{})
}

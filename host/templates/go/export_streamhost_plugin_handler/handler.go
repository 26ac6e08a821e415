// Package export_streamhost_plugin_handler is {{name}}'s `handler` export. The host calls
// Process once per batch of records of one Kafka partition; state writes and emits are
// kept only if it returns Ok.
//
// The types and functions come from the packages streamhost_plugin_*, which build.sh
// generates from the contract (wit/) with `wit-bindgen go`.
package export_streamhost_plugin_handler

import (
	"fmt"

	witTypes "go.bytecodealliance.org/pkg/wit/types"

	"wit_component/streamhost_plugin_emit"
	"wit_component/streamhost_plugin_log"
	"wit_component/streamhost_plugin_state"
	"wit_component/streamhost_plugin_types"
)

// Echo is set by `init` (config echo=true): emit every value to the output topic.
var Echo = false

// Process counts the batch's records and value bytes into the job's state.
func Process(batch streamhost_plugin_types.Batch) witTypes.Result[witTypes.Unit, streamhost_plugin_types.PluginError] {
	var records, bytes int64
	var out []streamhost_plugin_types.OutputRecord
	for _, r := range batch.Records {
		// Keys and values are ranges (spans) of one buffer, batch.Data.
		if r.Value.IsNone() {
			continue
		}
		span := r.Value.Some()
		records++
		bytes += int64(span.Len)
		if Echo {
			out = append(out, streamhost_plugin_types.OutputRecord{
				Value: witTypes.Some(batch.Data[span.Start : span.Start+span.Len]),
			})
		}
	}
	// One host call for all of the batch's state writes.
	streamhost_plugin_state.Apply([]streamhost_plugin_types.StateOp{
		streamhost_plugin_types.MakeStateOpIncr(streamhost_plugin_types.KeyDelta{Key: "records", Delta: records}),
		streamhost_plugin_types.MakeStateOpIncr(streamhost_plugin_types.KeyDelta{Key: "bytes", Delta: bytes}),
	})
	if len(out) > 0 {
		streamhost_plugin_emit.Send(out)
	}
	streamhost_plugin_log.Log(streamhost_plugin_types.LevelDebug,
		fmt.Sprintf("partition %d: %d records", batch.Partition, records))
	return witTypes.Ok[witTypes.Unit, streamhost_plugin_types.PluginError](witTypes.Unit{})
}

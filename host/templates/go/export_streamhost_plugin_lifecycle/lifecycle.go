// Package export_streamhost_plugin_lifecycle is the plugin's `lifecycle` export; the
// generated bindings (wit_exports.go) call Init in the package of this exact name.
package export_streamhost_plugin_lifecycle

import (
	"fmt"

	witTypes "go.bytecodealliance.org/pkg/wit/types"

	handler "wit_component/export_streamhost_plugin_handler"
)

// Init runs once per instance with the job's `--config key=value` pairs. An error
// stops the job before it reads a record, with this message.
func Init(config []witTypes.Tuple2[string, string]) witTypes.Result[witTypes.Unit, string] {
	for _, kv := range config {
		switch kv.F0 {
		case "echo":
			handler.Echo = kv.F1 == "true"
		default:
			return witTypes.Err[witTypes.Unit](fmt.Sprintf("unknown config key %q; known: echo", kv.F0))
		}
	}
	return witTypes.Ok[witTypes.Unit, string](witTypes.Unit{})
}

// Package export_streamhost_plugin_lifecycle is the plugin's `lifecycle` export: the
// package name is the one wit-bindgen's Go bindings call.
package export_streamhost_plugin_lifecycle

import (
	"fmt"

	witTypes "go.bytecodealliance.org/pkg/wit/types"

	handler "wit_component/export_streamhost_plugin_handler"
)

// Init reads the job's `--config`: emit=true|false. Anything else is an error the
// host reports before the job starts.
func Init(config []witTypes.Tuple2[string, string]) witTypes.Result[witTypes.Unit, string] {
	for _, kv := range config {
		key, value := kv.F0, kv.F1
		var flag bool
		switch value {
		case "true", "1", "yes":
			flag = true
		case "false", "0", "no":
			flag = false
		default:
			return witTypes.Err[witTypes.Unit](fmt.Sprintf("config %s=%s: expected true or false", key, value))
		}
		if key != "emit" {
			return witTypes.Err[witTypes.Unit](fmt.Sprintf("unknown config key %q; wordcount knows emit", key))
		}
		handler.EmitWords = flag
	}
	return witTypes.Ok[witTypes.Unit, string](witTypes.Unit{})
}

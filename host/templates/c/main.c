// {{name}}: a streamhost plugin. The host calls `process` once per batch of records of
// one Kafka partition; state writes and emits are kept only if `process` returns true.
//
// The types and functions come from gen/plugin.h, which build.sh generates from the
// contract (wit/) with `wit-bindgen c`. Memory: `process` owns its batch and frees it;
// what we pass to the host's functions stays ours (the host copies it).

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

static bool echo = false;

static bool equals(const plugin_string_t *s, const char *text) {
    return s->len == strlen(text) && memcmp(s->ptr, text, s->len) == 0;
}

// Runs once per instance with the job's `--config key=value` pairs.
bool exports_streamhost_plugin_lifecycle_init(plugin_list_tuple2_string_string_t *config,
                                              plugin_string_t *err) {
    bool ok = true;
    for (size_t i = 0; i < config->len && ok; i++) {
        if (equals(&config->ptr[i].f0, "echo")) {
            echo = equals(&config->ptr[i].f1, "true");
        } else {
            plugin_string_dup(err, "unknown config key; known: echo");
            ok = false;
        }
    }
    plugin_list_tuple2_string_string_free(config);
    return ok;
}

bool exports_streamhost_plugin_handler_process(exports_streamhost_plugin_handler_batch_t *batch,
                                               exports_streamhost_plugin_handler_plugin_error_t *err) {
    (void)err;
    int64_t records = 0, bytes = 0;
    streamhost_plugin_emit_output_record_t *out = calloc(batch->records.len + 1, sizeof *out);
    size_t n_out = 0;
    for (size_t i = 0; i < batch->records.len; i++) {
        streamhost_plugin_types_kafka_record_t *r = &batch->records.ptr[i];
        // Keys and values are ranges (spans) of one buffer, batch->data.
        if (!r->value.is_some) continue;
        records++;
        bytes += r->value.val.len;
        if (echo) {
            out[n_out].value.is_some = true;
            out[n_out].value.val.ptr = batch->data.ptr + r->value.val.start;
            out[n_out].value.val.len = r->value.val.len;
            n_out++;
        }
    }
    // One host call for all of the batch's state writes.
    streamhost_plugin_state_state_op_t ops[2];
    memset(ops, 0, sizeof ops);
    ops[0].tag = ops[1].tag = STREAMHOST_PLUGIN_TYPES_STATE_OP_INCR;
    plugin_string_set(&ops[0].val.incr.key, "records");
    ops[0].val.incr.delta = records;
    plugin_string_set(&ops[1].val.incr.key, "bytes");
    ops[1].val.incr.delta = bytes;
    streamhost_plugin_state_list_state_op_t list = {ops, 2};
    streamhost_plugin_state_apply(&list);
    if (n_out > 0) {
        streamhost_plugin_emit_list_output_record_t emits = {out, n_out};
        streamhost_plugin_emit_send(&emits);
    }

    char line[128];
    snprintf(line, sizeof line, "partition %d: %lld records", (int)batch->partition,
             (long long)records);
    plugin_string_t message;
    plugin_string_set(&message, line);
    streamhost_plugin_log_log(STREAMHOST_PLUGIN_TYPES_LEVEL_DEBUG, &message);

    free(out);
    exports_streamhost_plugin_handler_batch_free(batch);
    return true;
}

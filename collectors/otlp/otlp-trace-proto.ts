import { createRequire } from 'node:module';
import type protobuf from 'protobufjs';

/**
 * The subset of opentelemetry-proto that OTLP trace export uses, as a protobufjs JSON descriptor:
 * field numbers and types copied from opentelemetry-proto (github.com/open-telemetry/opentelemetry-proto):
 * - common/v1/common.proto: AnyValue (oneof string 1, bool 2, int64 3, double 4, ArrayValue 5,
 *   KeyValueList 6, bytes 7), ArrayValue, KeyValueList, KeyValue (key 1, value 2),
 *   InstrumentationScope (name 1, version 2, attributes 3, dropped_attributes_count 4);
 * - resource/v1/resource.proto: Resource (attributes 1, dropped_attributes_count 2);
 * - trace/v1/trace.proto: ResourceSpans (resource 1, scope_spans 2, schema_url 3), ScopeSpans
 *   (scope 1, spans 2, schema_url 3), Span (trace_id 1, span_id 2, trace_state 3, parent_span_id 4,
 *   name 5, kind 6, start_time_unix_nano fixed64 7, end_time_unix_nano fixed64 8, attributes 9,
 *   dropped_attributes_count 10, events 11, dropped_events_count 12, links 13,
 *   dropped_links_count 14, status 15, flags fixed32 16), Span.Event, Span.Link, Status
 *   (message 2, code 3; field 1 reserved);
 * - collector/trace/v1/trace_service.proto: ExportTraceServiceRequest (resource_spans 1),
 *   ExportTraceServiceResponse (partial_success 1), ExportTracePartialSuccess (rejected_spans
 *   int64 1, error_message 2);
 * - google/rpc/status.proto: Status (code 1, message 2; details 3 never sent), the body of OTLP/HTTP
 *   error responses.
 * Kept in code rather than as .proto files so the compiled agent needs no data files at run time.
 * Field names are the lowerCamelCase ones protobufjs and OTLP/JSON use; only numbers and types
 * matter on the wire.
 */
const repeated = (type: string, id: number) => ({ rule: 'repeated', type, id });
const field = (type: string, id: number) => ({ type, id });

const COMMON = 'opentelemetry.proto.common.v1';

export const OTLP_TRACE_DESCRIPTOR: protobuf.INamespace = {
  nested: {
    opentelemetry: {
      nested: {
        proto: {
          nested: {
            common: {
              nested: {
                v1: {
                  nested: {
                    AnyValue: {
                      oneofs: { value: { oneof: ['stringValue', 'boolValue', 'intValue', 'doubleValue', 'arrayValue', 'kvlistValue', 'bytesValue'] } },
                      fields: {
                        stringValue: field('string', 1),
                        boolValue: field('bool', 2),
                        intValue: field('int64', 3),
                        doubleValue: field('double', 4),
                        arrayValue: field('ArrayValue', 5),
                        kvlistValue: field('KeyValueList', 6),
                        bytesValue: field('bytes', 7),
                      },
                    },
                    ArrayValue: { fields: { values: repeated('AnyValue', 1) } },
                    KeyValueList: { fields: { values: repeated('KeyValue', 1) } },
                    KeyValue: { fields: { key: field('string', 1), value: field('AnyValue', 2) } },
                    InstrumentationScope: {
                      fields: {
                        name: field('string', 1),
                        version: field('string', 2),
                        attributes: repeated('KeyValue', 3),
                        droppedAttributesCount: field('uint32', 4),
                      },
                    },
                  },
                },
              },
            },
            resource: {
              nested: {
                v1: {
                  nested: {
                    Resource: { fields: { attributes: repeated(`${COMMON}.KeyValue`, 1), droppedAttributesCount: field('uint32', 2) } },
                  },
                },
              },
            },
            trace: {
              nested: {
                v1: {
                  nested: {
                    ResourceSpans: {
                      fields: {
                        resource: field('opentelemetry.proto.resource.v1.Resource', 1),
                        scopeSpans: repeated('ScopeSpans', 2),
                        schemaUrl: field('string', 3),
                      },
                    },
                    ScopeSpans: {
                      fields: {
                        scope: field(`${COMMON}.InstrumentationScope`, 1),
                        spans: repeated('Span', 2),
                        schemaUrl: field('string', 3),
                      },
                    },
                    Span: {
                      fields: {
                        traceId: field('bytes', 1),
                        spanId: field('bytes', 2),
                        traceState: field('string', 3),
                        parentSpanId: field('bytes', 4),
                        flags: field('fixed32', 16),
                        name: field('string', 5),
                        kind: field('SpanKind', 6),
                        startTimeUnixNano: field('fixed64', 7),
                        endTimeUnixNano: field('fixed64', 8),
                        attributes: repeated(`${COMMON}.KeyValue`, 9),
                        droppedAttributesCount: field('uint32', 10),
                        events: repeated('Event', 11),
                        droppedEventsCount: field('uint32', 12),
                        links: repeated('Link', 13),
                        droppedLinksCount: field('uint32', 14),
                        status: field('Status', 15),
                      },
                      nested: {
                        SpanKind: {
                          values: {
                            SPAN_KIND_UNSPECIFIED: 0,
                            SPAN_KIND_INTERNAL: 1,
                            SPAN_KIND_SERVER: 2,
                            SPAN_KIND_CLIENT: 3,
                            SPAN_KIND_PRODUCER: 4,
                            SPAN_KIND_CONSUMER: 5,
                          },
                        },
                        Event: {
                          fields: {
                            timeUnixNano: field('fixed64', 1),
                            name: field('string', 2),
                            attributes: repeated(`${COMMON}.KeyValue`, 3),
                            droppedAttributesCount: field('uint32', 4),
                          },
                        },
                        Link: {
                          fields: {
                            traceId: field('bytes', 1),
                            spanId: field('bytes', 2),
                            traceState: field('string', 3),
                            attributes: repeated(`${COMMON}.KeyValue`, 4),
                            droppedAttributesCount: field('uint32', 5),
                            flags: field('fixed32', 6),
                          },
                        },
                      },
                    },
                    Status: {
                      fields: { message: field('string', 2), code: field('StatusCode', 3) },
                      nested: { StatusCode: { values: { STATUS_CODE_UNSET: 0, STATUS_CODE_OK: 1, STATUS_CODE_ERROR: 2 } } },
                    },
                  },
                },
              },
            },
            collector: {
              nested: {
                trace: {
                  nested: {
                    v1: {
                      nested: {
                        ExportTraceServiceRequest: { fields: { resourceSpans: repeated('opentelemetry.proto.trace.v1.ResourceSpans', 1) } },
                        ExportTraceServiceResponse: { fields: { partialSuccess: field('ExportTracePartialSuccess', 1) } },
                        ExportTracePartialSuccess: { fields: { rejectedSpans: field('int64', 1), errorMessage: field('string', 2) } },
                      },
                    },
                  },
                },
              },
            },
          },
        },
      },
    },
    google: {
      nested: {
        rpc: {
          nested: {
            Status: { fields: { code: field('int32', 1), message: field('string', 2) } },
          },
        },
      },
    },
  },
};

interface OtlpTypes {
  readonly request: protobuf.Type;
  readonly response: protobuf.Type;
  readonly rpcStatus: protobuf.Type;
}

let types: OtlpTypes | null = null;

/**
 * The protobuf message types, built once on first use. protobufjs itself is loaded then too: OTLP
 * is on by default, and an agent that never receives protobuf need not hold it in memory.
 */
export function otlpTypes(): OtlpTypes {
  if (types === null) {
    const { Root } = createRequire(import.meta.url)('protobufjs') as typeof protobuf;
    const root = Root.fromJSON(OTLP_TRACE_DESCRIPTOR);
    root.resolveAll();
    types = {
      request: root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest'),
      response: root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse'),
      rpcStatus: root.lookupType('google.rpc.Status'),
    };
  }
  return types;
}

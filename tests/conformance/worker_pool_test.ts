// Copyright 2026 the @eventbus/core authors. MIT license.
// The conformance suite on the embedded WorkerPool (no broker needed).

import { describe, it } from "node:test";
import { runConformance } from "@eventbus/core/conformance";
import { workerPoolTarget } from "../fixtures/_worker_pool.ts";
import { otelRoundTrip } from "./_otel_round_trip.ts";

runConformance(workerPoolTarget({ bulk: 2000 }), { describe, it });
otelRoundTrip(workerPoolTarget());

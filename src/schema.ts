// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * Validated events: the [Standard Schema](https://standardschema.dev) v1
 * interface (copied, as the spec allows, so the library depends on no
 * validator), and the event maps a bus infers from its `schemas`. Zod 3.24+,
 * Valibot 1+, ArkType 2+ and others implement it.
 *
 * @example An event map inferred from schemas
 * ```ts
 * import { EventBus, type StandardSchemaV1 } from "@eventbus/core";
 * // Any Standard Schema works; this one is written by hand.
 * const order: StandardSchemaV1<{ total: number }> = {
 *   "~standard": {
 *     version: 1,
 *     vendor: "example",
 *     validate: (value) =>
 *       typeof (value as { total?: unknown })?.total === "number"
 *         ? { value: value as { total: number } }
 *         : { issues: [{ message: "total must be a number", path: ["total"] }] },
 *   },
 * };
 * const bus = new EventBus({ schemas: { "order.placed": order, "cache.cleared": undefined } });
 * bus.subscribe("order.placed", (event) => console.assert(event.data.total > 0));
 * await bus.emit("order.placed", { total: 3 });
 * await bus.close();
 * ```
 *
 * @module
 */

/**
 * A Standard Schema v1: anything with a `"~standard"` property, as zod,
 * valibot and arktype schemas have.
 *
 * @typeParam Input What the schema accepts.
 * @typeParam Output What it gives back (after transforms and defaults).
 *
 * @example Checking a value with any Standard Schema
 * ```ts
 * import type { StandardSchemaV1 } from "@eventbus/core";
 * async function check(schema: StandardSchemaV1, value: unknown): Promise<boolean> {
 *   const result = await schema["~standard"].validate(value);
 *   return result.issues === undefined;
 * }
 * const any: StandardSchemaV1 = { "~standard": { version: 1, vendor: "x", validate: (value) => ({ value }) } };
 * console.assert(await check(any, 1));
 * ```
 */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
  /** The Standard Schema properties. */
  readonly "~standard": StandardSchemaProps<Input, Output>;
}

/**
 * The properties of a {@linkcode StandardSchemaV1}.
 *
 * @typeParam Input What the schema accepts.
 * @typeParam Output What it gives back.
 *
 * @example The properties of a schema that accepts anything
 * ```ts
 * import type { StandardSchemaProps } from "@eventbus/core";
 * const props: StandardSchemaProps = { version: 1, vendor: "x", validate: (value) => ({ value }) };
 * console.assert(props.version === 1);
 * ```
 */
export interface StandardSchemaProps<Input = unknown, Output = Input> {
  /** The version of the standard: 1. */
  readonly version: 1;
  /** The validation library's name. */
  readonly vendor: string;
  /** Validates an unknown value, synchronously or not. */
  readonly validate: (
    value: unknown,
  ) => StandardSchemaResult<Output> | Promise<StandardSchemaResult<Output>>;
  /** The input and output types, for inference only. */
  readonly types?: StandardSchemaTypes<Input, Output> | undefined;
}

/**
 * What `validate` returns: the output value, or the issues.
 *
 * @typeParam Output The validated value's type.
 *
 * @example Telling success from failure
 * ```ts
 * import type { StandardSchemaResult } from "@eventbus/core";
 * const result: StandardSchemaResult<number> = { issues: [{ message: "not a number" }] };
 * console.assert(result.issues !== undefined);
 * ```
 */
export type StandardSchemaResult<Output> =
  | { readonly value: Output; readonly issues?: undefined }
  | { readonly issues: ReadonlyArray<StandardSchemaIssue> };

/**
 * One problem a schema found.
 *
 * @example An issue with a path
 * ```ts
 * import type { StandardSchemaIssue } from "@eventbus/core";
 * const issue: StandardSchemaIssue = { message: "must be an email", path: ["user", { key: "email" }] };
 * console.assert(issue.path?.length === 2);
 * ```
 */
export interface StandardSchemaIssue {
  /** What is wrong. */
  readonly message: string;
  /** Where: keys, or segments with a `key`, from the root of the data. */
  readonly path?:
    | ReadonlyArray<PropertyKey | { readonly key: PropertyKey }>
    | undefined;
}

/**
 * The inferred types of a {@linkcode StandardSchemaV1}.
 *
 * @typeParam Input What the schema accepts.
 * @typeParam Output What it gives back.
 *
 * @example The types of a schema that turns strings into dates
 * ```ts
 * import type { StandardSchemaTypes } from "@eventbus/core";
 * type DateTypes = StandardSchemaTypes<string, Date>;
 * const sample: DateTypes["output"] = new Date(0);
 * console.assert(sample.getTime() === 0);
 * ```
 */
export interface StandardSchemaTypes<Input = unknown, Output = Input> {
  /** What the schema accepts. */
  readonly input: Input;
  /** What it gives back. */
  readonly output: Output;
}

/**
 * A bus's schemas: per event type a Standard Schema, or `undefined` for an
 * event without a payload.
 *
 * @example Declaring schemas for two event types
 * ```ts
 * import type { EventSchemas } from "@eventbus/core";
 * const schemas: EventSchemas = { "cache.cleared": undefined };
 * console.assert("cache.cleared" in schemas);
 * ```
 */
export type EventSchemas = Record<string, StandardSchemaV1 | undefined>;

/**
 * What `emit` takes for each type of `S`: each schema's input type.
 *
 * @typeParam S The schemas.
 *
 * @example The emit payloads of a bus's schemas
 * ```ts
 * import type { SchemaInputs, StandardSchemaV1 } from "@eventbus/core";
 * type Inputs = SchemaInputs<{ "a.b": StandardSchemaV1<string, Date>; "c.d": undefined }>;
 * const payload: Inputs["a.b"] = "2026-01-01";
 * console.assert(payload.length > 0);
 * ```
 */
export type SchemaInputs<S extends EventSchemas> = {
  [K in keyof S]: S[K] extends StandardSchemaV1
    ? NonNullable<S[K]["~standard"]["types"]>["input"]
    : undefined;
};

/**
 * What handlers receive for each type of `S`: each schema's output type.
 *
 * @typeParam S The schemas.
 *
 * @example The handler payloads of a bus's schemas
 * ```ts
 * import type { SchemaOutputs, StandardSchemaV1 } from "@eventbus/core";
 * type Outputs = SchemaOutputs<{ "a.b": StandardSchemaV1<string, Date> }>;
 * const payload: Outputs["a.b"] = new Date(0);
 * console.assert(payload.getTime() === 0);
 * ```
 */
export type SchemaOutputs<S extends EventSchemas> = {
  [K in keyof S]: S[K] extends StandardSchemaV1
    ? NonNullable<S[K]["~standard"]["types"]>["output"]
    : undefined;
};

/**
 * Where a bus with `schemas` validates: `"emit"` (before any handler runs
 * and before anything is published), `"consume"` (when a delivery arrives,
 * before its handler runs), `"both"`, or `"none"`.
 *
 * @example Trusting producers and validating only in workers
 * ```ts
 * import type { ValidateMode } from "@eventbus/core";
 * import { EventBus } from "@eventbus/core";
 * const validate: ValidateMode = "consume";
 * const bus = new EventBus({ schemas: { "cache.cleared": undefined }, validate });
 * await bus.close();
 * ```
 */
export type ValidateMode = "emit" | "consume" | "both" | "none";

/**
 * The PagewrightJob spec has two schemas: deploy/k8s/crd.yaml's (the apiserver validates and
 * defaults with it) and common/job-resource.ts's JobSpec (the manager parses with it, and skips a
 * job it refuses). They must accept the same objects, so this compares them field by field: zod's
 * own JSON Schema of JobSpec (its input side, OpenAPI 3.0, as the apiserver speaks it) against the
 * CRD's spec schema, every keyword included (type, minimum/maximum, minLength/maxLength, pattern,
 * enum, default, required, nested objects). Only the descriptions and the CEL rules (transition
 * rules, which zod has no counterpart for: test/integration/job-spec.test.ts) are left out.
 * The comparison itself is checked on drifted copies of the CRD, one keyword at a time.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadYaml } from '@kubernetes/client-node';
import { expect } from 'chai';
import { z } from 'zod';
import { JobSpec } from '../../common/job-resource.js';
import { CheckFinding, CheckResult, DiffSummary } from '../../common/schemas.js';
import { SiteChecks } from '../../common/site-resource.js';
import { REPO_ROOT } from '../support/sites.js';

type Schema = { [keyword: string]: unknown };

/** Keywords that carry no constraint: prose, and the CEL rules the CRD alone can state. */
const NOT_CONSTRAINTS = new Set(['description', 'x-kubernetes-validations']);

function normalize(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(normalize);
  if (schema === null || typeof schema !== 'object') return schema;
  return Object.fromEntries(
    Object.entries(schema)
      .filter(([k]) => !NOT_CONSTRAINTS.has(k))
      .map(([k, v]) => [k, normalize(v)]),
  );
}

/**
 * The CRD's spec schema as written. client-node's loadYaml turns objects of built-in API groups
 * into its model classes (`default` becomes `_default`), so the file is read as an object of
 * another group, which it leaves as plain data.
 */
function crdSpec(): Schema {
  const text = readFileSync(join(REPO_ROOT, 'deploy/k8s/crd.yaml'), 'utf8');
  const plain = text.replace(/^apiVersion: apiextensions\.k8s\.io\/v1$/m, 'apiVersion: as-written.test/v1');
  expect(plain, 'the CRD is apiextensions.k8s.io/v1').to.not.equal(text);
  const crd = loadYaml<{ spec: { versions: Array<{ schema: { openAPIV3Schema: { properties: { spec: Schema } } } }> } }>(plain);
  expect(crd.spec.versions, 'one served version').to.have.length(1);
  return crd.spec.versions[0]!.schema.openAPIV3Schema.properties.spec;
}

/** A field of the CRD's status schema, read as crdSpec() reads the spec. */
function crdStatusField(name: string): Schema {
  const text = readFileSync(join(REPO_ROOT, 'deploy/k8s/crd.yaml'), 'utf8').replace(
    /^apiVersion: apiextensions\.k8s\.io\/v1$/m,
    'apiVersion: as-written.test/v1',
  );
  const crd = loadYaml<{
    spec: { versions: Array<{ schema: { openAPIV3Schema: { properties: { status: { properties: Record<string, Schema> } } } } }> };
  }>(text);
  return crd.spec.versions[0]!.schema.openAPIV3Schema.properties.status.properties[name]!;
}

function zodSpec(): Schema {
  return z.toJSONSchema(JobSpec, { io: 'input', target: 'openapi-3.0' }) as Schema;
}

/** Where the two schemas differ, as "path: crd ... zod ..." lines (empty: none). */
function differences(crd: unknown, zod: unknown, path = 'spec'): string[] {
  const a = normalize(crd);
  const b = normalize(zod);
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object' || Array.isArray(a) || Array.isArray(b)) {
    return JSON.stringify(a) === JSON.stringify(b) ? [] : [`${path}: crd ${JSON.stringify(a)}, zod ${JSON.stringify(b)}`];
  }
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  return keys.flatMap((k) => {
    const [x, y] = [(a as Schema)[k], (b as Schema)[k]];
    if (k === 'required') {
      const sorted = (v: unknown) => JSON.stringify([...((v as string[] | undefined) ?? [])].sort());
      return sorted(x) === sorted(y) ? [] : [`${path}.required: crd ${sorted(x)}, zod ${sorted(y)}`];
    }
    return differences(x, y, k === 'properties' ? path : `${path}.${k}`);
  });
}

describe('the job spec: deploy/k8s/crd.yaml and common/job-resource.ts agree', () => {
  it('field by field: type, bounds, lengths, pattern, enum, default and required', () => {
    expect(differences(crdSpec(), zodSpec())).to.deep.equal([]);
  });

  it('name the same fields (the comparison walks both)', () => {
    const fields = (s: Schema) => Object.keys(s.properties as Schema).sort();
    expect(fields(crdSpec())).to.deep.equal(fields(zodSpec()));
    expect(fields(crdSpec())).to.include.members(['siteId', 'prompt', 'priority', 'budget', 'ttlSecondsAfterFinished']);
  });

  it('priority is bounded (±1,000,000) on both sides, as admission compares it', () => {
    const priority = (crdSpec().properties as Record<string, Schema>).priority!;
    expect(priority).to.include({ type: 'integer', minimum: -1_000_000, maximum: 1_000_000, default: 0 });
    expect(JobSpec.shape.priority.safeParse(1_000_001).success).to.equal(false);
    expect(JobSpec.shape.priority.safeParse(-1_000_000).success).to.equal(true);
  });

  describe('the comparison catches a drift in any keyword', () => {
    /** Each drift: where (a field path under spec; empty for spec itself), the keyword, its new value (undefined: removed). */
    const drifts: Array<[string, string[], string, unknown, RegExp]> = [
      ['a type', ['retries'], 'type', 'number', /^spec\.retries\.type:/],
      ['a minimum', ['timeoutSeconds'], 'minimum', 30, /^spec\.timeoutSeconds\.minimum:/],
      ['a maximum', ['priority'], 'maximum', 2_000_000, /^spec\.priority\.maximum:/],
      ['a maximum removed', ['ttlSecondsAfterFinished'], 'maximum', undefined, /^spec\.ttlSecondsAfterFinished\.maximum:/],
      ['a minLength', ['model'], 'minLength', 2, /^spec\.model\.minLength:/],
      ['a maxLength', ['prompt'], 'maxLength', 30000, /^spec\.prompt\.maxLength:/],
      ['a pattern', ['siteId'], 'pattern', '^[a-z0-9-]+$', /^spec\.siteId\.pattern:/],
      ['an enum', ['model'], 'enum', ['gpt-5.5'], /^spec\.model\.enum:/],
      ['a default', ['retries'], 'default', 3, /^spec\.retries\.default:/],
      ['a default removed', ['publish'], 'default', undefined, /^spec\.publish\.default:/],
      ['required', [], 'required', ['siteId', 'prompt', 'model'], /^spec\.required:/],
      ['a nested bound', ['budget', 'maxRequests'], 'minimum', 0, /^spec\.budget\.maxRequests\.minimum:/],
      ['a new field', ['labels'], 'type', 'string', /^spec\.labels:/],
    ];
    for (const [what, path, keyword, value, expected] of drifts) {
      it(what, () => {
        const drifted = structuredClone(crdSpec());
        let at = drifted;
        for (const name of path) {
          const properties = at.properties as Record<string, Schema>;
          properties[name] ??= {};
          at = properties[name];
        }
        if (value === undefined) delete at[keyword];
        else at[keyword] = value;
        const found = differences(drifted, zodSpec());
        expect(found).to.have.length(1);
        expect(found[0]).to.match(expected);
      });
    }
  });
});

describe('status.diffSummary: deploy/k8s/crd.yaml and common/schemas.ts DiffSummary agree', () => {
  it('field by field, as the runner writes it and the preview reads it', () => {
    const zod = z.toJSONSchema(DiffSummary, { io: 'input', target: 'openapi-3.0' });
    expect(differences(crdStatusField('diffSummary'), zod, 'status.diffSummary')).to.deep.equal([]);
    expect(Object.keys(crdStatusField('diffSummary').properties as Schema)).to.have.members(Object.keys(DiffSummary.shape));
  });
});

/** A field of the PagewrightSite CRD's spec, read as crdSpec() reads the job's. */
function siteCrdSpecField(name: string): Schema {
  const text = readFileSync(join(REPO_ROOT, 'deploy/k8s/site-crd.yaml'), 'utf8').replace(
    /^apiVersion: apiextensions\.k8s\.io\/v1$/m,
    'apiVersion: as-written.test/v1',
  );
  const crd = loadYaml<{
    spec: { versions: Array<{ schema: { openAPIV3Schema: { properties: { spec: { properties: Record<string, Schema> } } } } }> };
  }>(text);
  return crd.spec.versions[0]!.schema.openAPIV3Schema.properties.spec.properties[name]!;
}

describe('the checks: deploy/k8s/site-crd.yaml spec.checks and common/site-resource.ts agree, and status.checks names what the runner reports', () => {
  it('spec.checks field by field (a comma in a YAML flow mapping once split a description into fields the apiserver refused)', () => {
    const zod = z.toJSONSchema(SiteChecks, { io: 'input', target: 'openapi-3.0' });
    expect(differences(siteCrdSpecField('checks'), zod, 'spec.checks')).to.deep.equal([]);
  });

  it('status.checks items and their findings have the fields of CheckResult', () => {
    const items = crdStatusField('checks').items as Schema;
    expect(Object.keys(items.properties as Schema)).to.have.members(Object.keys(CheckResult.shape));
    const finding = ((items.properties as Record<string, Schema>).findings!.items as Schema).properties as Schema;
    expect(Object.keys(finding)).to.have.members(Object.keys(CheckFinding.shape));
  });
});

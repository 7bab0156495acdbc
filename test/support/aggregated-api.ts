/**
 * Registers a server running on this machine as an aggregated API of a test control plane, as
 * deploy/k8s/preview.yaml registers the review API in a cluster: a Service without a selector,
 * its Endpoints naming this machine's address (the apiserver reaches extension servers at their
 * endpoints, --enable-aggregator-routing, and endpoints may not be loopback), and an APIService
 * with the CA of the server's certificate. Waits until the aggregator says Available.
 */
import { networkInterfaces } from 'node:os';
import { waitFor } from './processes.js';
import type { ControlPlane } from './control-plane.js';

/** This machine's first non-loopback IPv4 address: what an Endpoints object may name. */
export function hostAddress(): string {
  for (const addrs of Object.values(networkInterfaces())) {
    const v4 = addrs?.find((a) => a.family === 'IPv4' && !a.internal);
    if (v4) return v4.address;
  }
  throw new Error('this machine has no non-loopback IPv4 address for the apiserver to reach an aggregated API at');
}

export async function registerAggregatedApi(
  cp: ControlPlane,
  o: { group: string; version: string; namespace: string; service: string; address: string; port: number; caBundle: Buffer },
): Promise<() => Promise<void>> {
  const name = `${o.version}.${o.group}`;
  const manifest = `apiVersion: v1
kind: Service
metadata: {name: ${o.service}, namespace: ${o.namespace}}
spec:
  ports: [{name: https, port: 443, targetPort: ${o.port}}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: ${o.service}, namespace: ${o.namespace}}
subsets:
  - addresses: [{ip: ${o.address}}]
    ports: [{name: https, port: ${o.port}}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: ${name}}
spec:
  group: ${o.group}
  version: ${o.version}
  service: {namespace: ${o.namespace}, name: ${o.service}, port: 443}
  caBundle: ${o.caBundle.toString('base64')}
  groupPriorityMinimum: 1000
  versionPriority: 15
`;
  await cp.kubectl(['apply', '-f', '-'], { input: manifest });
  await waitFor(
    `APIService ${name} Available`,
    async () => {
      const r = await cp.kubectl(['get', 'apiservice', name, '-o', 'jsonpath={.status.conditions[?(@.type=="Available")].status}'], {
        allowFailure: true,
      });
      return r.stdout.trim() === 'True';
    },
    60_000,
    250,
  ).catch(async (err: Error) => {
    const r = await cp.kubectl(['get', 'apiservice', name, '-o', 'yaml'], { allowFailure: true });
    throw new Error(`${err.message}\n${r.stdout}`);
  });
  return async () => {
    await cp.kubectl(['delete', 'apiservice', name, '--ignore-not-found'], { allowFailure: true });
  };
}

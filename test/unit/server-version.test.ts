/** The manager's start-up check of the Kubernetes version (manager/server-version.ts), on what real apiservers answer. */
import { expect } from 'chai';
import { MIN_KUBERNETES, kubernetesVersionVerdict } from '../../manager/server-version.js';

describe('the minimum Kubernetes version', () => {
  it('is 1.29: native sidecars are on by default from there', () => {
    expect(MIN_KUBERNETES).to.deep.equal({ major: 1, minor: 29 });
  });

  it('accepts 1.29 and newer, as upstream and managed clusters report them', () => {
    for (const [info, version] of [
      [{ major: '1', minor: '29', gitVersion: 'v1.29.0' }, 'v1.29.0'],
      [{ major: '1', minor: '33', gitVersion: 'v1.33.13' }, 'v1.33.13'],
      [{ major: '1', minor: '30+', gitVersion: 'v1.30.5-gke.1014001' }, 'v1.30.5-gke.1014001'],
      [{ major: '1', minor: '31+', gitVersion: 'v1.31.2-eks-7f9249a' }, 'v1.31.2-eks-7f9249a'],
      [{ major: '1', minor: '29', gitVersion: 'v1.29.9+k3s1' }, 'v1.29.9+k3s1'],
      [{ major: '2', minor: '0', gitVersion: 'v2.0.0' }, 'v2.0.0'],
      [{ gitVersion: 'v1.32.1' }, 'v1.32.1'],
    ] as const) {
      expect(kubernetesVersionVerdict(info), JSON.stringify(info)).to.deep.equal({ ok: true, version });
    }
  });

  it('refuses anything older, naming the version found and the one required', () => {
    for (const [info, found] of [
      [{ major: '1', minor: '28', gitVersion: 'v1.28.15' }, 'v1.28.15'],
      [{ major: '1', minor: '27+', gitVersion: 'v1.27.16-eks-a737599' }, 'v1.27.16-eks-a737599'],
      [{ major: '0', minor: '99', gitVersion: '' }, '0.99'],
    ] as const) {
      const verdict = kubernetesVersionVerdict(info);
      expect(verdict.ok, JSON.stringify(info)).to.equal(false);
      if (verdict.ok) continue;
      expect(verdict.message).to.equal(
        `Kubernetes ${found} is too old: Pagewright needs Kubernetes >= 1.29 (runner pods run the agent as a native sidecar container)`,
      );
    }
  });

  it('refuses a version it cannot read rather than guess', () => {
    const verdict = kubernetesVersionVerdict({ major: '', minor: '', gitVersion: 'unknown' });
    expect(verdict.ok).to.equal(false);
    if (!verdict.ok)
      expect(verdict.message).to.equal(
        'cannot tell the Kubernetes version from the apiserver\'s /version (major "", minor "", gitVersion "unknown"); Pagewright needs Kubernetes >= 1.29',
      );
    // an unstamped build reports v0.0.0: too old, not unreadable
    expect(kubernetesVersionVerdict({ major: '', minor: '', gitVersion: 'v0.0.0-master+$Format:%H$' }).ok).to.equal(false);
  });
});

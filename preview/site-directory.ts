/**
 * The review API's view of PagewrightSites: the storage site behind a name (the name itself:
 * common/site-resource.ts), and a touch after a push or a rollback (an annotation with the
 * time), which the manager's site controller sees through its watch and answers by mirroring
 * storage into the site's status at once rather than at its next resync. For a preview, the
 * site must be a PagewrightSite in the namespace asked for (the RBAC boundary), and its current
 * version is storage's (the status mirror may lag a push by a moment).
 */
import { ApiException, type CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { GROUP, VERSION } from '../common/job-resource.js';
import { PagewrightSite, SITE_CHANGED_ANNOTATION, SITE_PLURAL } from '../common/site-resource.js';
import { PagewrightError } from '../common/errors.js';
import { type StorageClient, StorageRequestError } from '../common/storage-client.js';
import type { SiteDirectory } from './review-api.js';
import type { ReviewSite } from './review-job.js';

const MERGE_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

export class KubeSiteDirectory implements SiteDirectory {
  constructor(
    private readonly api: CustomObjectsApi,
    private readonly storage?: StorageClient,
  ) {}

  /** The preview router's site: the PagewrightSite's storage site and its current version (none yet: no currentVersion). */
  async reviewSite(namespace: string, name: string): Promise<ReviewSite | null> {
    const site = await this.get(namespace, name);
    if (!site) return null;
    try {
      const info = await this.storage?.getSite(site.storageId);
      return { siteId: site.storageId, ...(info ? { currentVersion: info.version } : {}) };
    } catch (err) {
      if (err instanceof StorageRequestError && err.status === 404) return { siteId: site.storageId };
      throw new PagewrightError('StorageUnavailable', `storage: ${(err as Error).message}`, { cause: err });
    }
  }

  async get(namespace: string, name: string): Promise<{ storageId: string } | null> {
    try {
      const site = PagewrightSite.parse(
        await this.api.getNamespacedCustomObject({ group: GROUP, version: VERSION, plural: SITE_PLURAL, namespace, name }),
      );
      return { storageId: site.metadata.name };
    } catch (err) {
      if (err instanceof ApiException && err.code === 404) return null;
      throw err;
    }
  }

  async changed(namespace: string, name: string): Promise<void> {
    await this.api.patchNamespacedCustomObject(
      {
        group: GROUP,
        version: VERSION,
        plural: SITE_PLURAL,
        namespace,
        name,
        body: { metadata: { annotations: { [SITE_CHANGED_ANNOTATION]: new Date().toISOString() } } },
      },
      MERGE_PATCH,
    );
  }
}

import { expect } from 'chai';
import { PagewrightError } from '../../common/errors.js';
import { parseFinalMessage } from '../../runner/final-message.js';

describe('parseFinalMessage', () => {
  it('reads the structured JSON answer, fenced or not', () => {
    const json = JSON.stringify({ summary: 'Changed the title', files_changed: ['index.html'] });
    expect(parseFinalMessage(json)).to.deep.equal({ summary: 'Changed the title', claimedFiles: ['index.html'], format: 'json' });
    expect(parseFinalMessage(`\`\`\`json\n${json}\n\`\`\``).format).to.equal('json');
  });

  it('understands the legacy FILES_CHANGED / SUMMARY lines', () => {
    const parsed = parseFinalMessage('Done.\nFILES_CHANGED: 2\nSUMMARY: Fixed the nav\nand the footer');
    expect(parsed).to.deep.equal({ summary: 'Fixed the nav\nand the footer', claimedFiles: 2, format: 'legacy' });
  });

  it('falls back to prose, clipped', () => {
    const parsed = parseFinalMessage(`I updated things. ${'x'.repeat(5000)}`);
    expect(parsed.format).to.equal('text');
    expect(parsed.summary.length).to.equal(4000);
  });

  it('treats JSON of the wrong shape as prose rather than trusting it', () => {
    expect(parseFinalMessage('{"files_changed": 3}').format).to.equal('text');
  });

  it('fails with InvalidAgentOutput when there is no final message', () => {
    for (const empty of [null, undefined, '', '  \n']) {
      expect(() => parseFinalMessage(empty))
        .to.throw(PagewrightError)
        .with.property('code', 'InvalidAgentOutput');
    }
  });
});

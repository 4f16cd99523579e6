// The built-in rules, registered in the order `usam train --help`, the
// report and `usam reproduce` list them; and the registry's API. Import the
// rules from here: importing this file registers them.
import { asamRule } from './asam.js';
import { detSamRule } from './det-sam.js';
import { frobSamRule } from './frob-sam.js';
import { gnpRule } from './gnp.js';
import { registerRule } from './registry.js';
import { rwpRule } from './rwp.js';
import { samRule } from './sam.js';
import { traceSamRule } from './trace-sam.js';
import { universalRule } from './universal.js';

registerRule(samRule);
registerRule(asamRule);
registerRule(traceSamRule);
registerRule(detSamRule);
registerRule(frobSamRule);
registerRule(universalRule);
registerRule(rwpRule);
registerRule(gnpRule);

export * from './registry.js';
export { asam } from './asam.js';
export { detSam } from './det-sam.js';
export { frobSam } from './frob-sam.js';
export { gradientNormPenalty } from './gnp.js';
export { randomPerturbation } from './rwp.js';
export { sam } from './sam.js';
export { traceSam } from './trace-sam.js';
export { universal } from './universal.js';

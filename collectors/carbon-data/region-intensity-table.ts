import type { GridIntensityFactor } from '../../model/carbon/grid-intensity-factor.js';

/**
 * Location-based grid emission factors shipped with tokenwatt. Each row says who published the
 * figure, for which data year, and on which basis. Fewer rows with a source beat many without:
 * a region missing here is an error at export time, never a guess. Use `carbon.intensityGPerKwh`
 * (with your own source) or an hourly file for anything else. See README.md in this folder.
 */

const LB_PER_MWH_TO_G_PER_KWH = 0.45359237; // 1 lb = 453.59237 g; 1 MWh = 1000 kWh

const EMBER_OWID = {
  source: 'Ember Yearly Electricity Data, via Our World in Data "Carbon intensity of electricity generation" (2023 values)',
  sourceUrl: 'https://ourworldindata.org/grapher/carbon-intensity-electricity',
  year: 2023,
  basis: 'lifecycle' as const,
};
const EMBER_STATISTA = {
  source: 'Ember (July 2024), as charted by Statista "Electricity generation emission intensity in selected countries worldwide in 2023"',
  sourceUrl: 'https://www.statista.com/statistics/943137/global-emissions-intensity-power-sector-by-country/',
  year: 2023,
  basis: 'lifecycle' as const,
};
const EGRID_2023 = {
  source: 'US EPA eGRID2023 summary tables, subregion total output emission rate (lb CO2e/MWh)',
  sourceUrl: 'https://www.epa.gov/egrid/summary-data',
  year: 2023,
  basis: 'combustion' as const,
  note:
    'Value transcribed from the EPA eGRID2023 summary tables by a secondary source and converted at 0.45359237 kg/lb; ' +
    'not re-checked against the EPA workbook in this build. eGRID output rates count stack emissions (CO2, CH4, N2O) only.',
};
const GOOGLE_2023 = {
  source: 'Google Cloud region carbon data 2023, "Grid carbon intensity (gCO2eq / kWh)" (GoogleCloudPlatform/region-carbon-info data/yearly/2023.csv)',
  sourceUrl: 'https://github.com/GoogleCloudPlatform/region-carbon-info',
  year: 2023,
  basis: 'combustion' as const,
  note: 'Google defines it as "average operational gross emissions per unit of energy from the grid" (before its own renewable purchases).',
};

function country(id: string, name: string, gCo2ePerKwh: number): GridIntensityFactor {
  return { id, name, kind: 'country', gCo2ePerKwh, publishedValue: gCo2ePerKwh, publishedUnit: 'gCO2e/kWh', ...EMBER_OWID };
}

function egrid(subregion: string, name: string, lbPerMwh: number): GridIntensityFactor {
  return {
    id: `egrid:${subregion}`,
    name: `eGRID subregion ${subregion} (${name})`,
    kind: 'egrid-subregion',
    gCo2ePerKwh: Math.round(lbPerMwh * LB_PER_MWH_TO_G_PER_KWH * 10) / 10,
    publishedValue: lbPerMwh,
    publishedUnit: 'lb CO2e/MWh',
    ...EGRID_2023,
  };
}

function gcp(region: string, location: string, gCo2ePerKwh: number): GridIntensityFactor {
  return {
    id: `gcp:${region}`,
    name: `Google Cloud ${region} (${location})`,
    kind: 'cloud-region',
    gCo2ePerKwh,
    publishedValue: gCo2ePerKwh,
    publishedUnit: 'gCO2eq/kWh',
    ...GOOGLE_2023,
  };
}

const BASE: readonly GridIntensityFactor[] = [
  // Countries: Ember lifecycle intensity of generation, 2023.
  country('AT', 'Austria', 111),
  country('BE', 'Belgium', 138),
  country('BG', 'Bulgaria', 335),
  country('HR', 'Croatia', 205),
  country('CY', 'Cyprus', 534),
  country('CZ', 'Czechia', 450),
  country('DK', 'Denmark', 152),
  country('EE', 'Estonia', 417),
  country('FI', 'Finland', 79),
  country('FR', 'France', 56),
  country('DE', 'Germany', 381),
  country('GR', 'Greece', 337),
  country('HU', 'Hungary', 204),
  country('IE', 'Ireland', 291),
  country('AR', 'Argentina', 354),
  country('AU', 'Australia', 549),
  country('BR', 'Brazil', 98),
  country('CA', 'Canada', 170),
  country('CL', 'Chile', 291),
  country('CN', 'China', 582),
  country('CO', 'Colombia', 260),
  country('IN', 'India', 713),
  { id: 'NO', name: 'Norway', kind: 'country', gCo2ePerKwh: 30, publishedValue: 30, publishedUnit: 'gCO2/kWh', ...EMBER_STATISTA },
  { id: 'world', name: 'World average', kind: 'world', gCo2ePerKwh: 481, publishedValue: 481, publishedUnit: 'gCO2/kWh', ...EMBER_STATISTA },

  // US eGRID subregions (where most US cloud and colocation capacity sits).
  egrid('CAMX', 'WECC California', 430.0),
  egrid('NWPP', 'WECC Northwest', 635.3),
  egrid('RFCE', 'RFC East', 599.2),
  egrid('RFCW', 'RFC West', 916.1),
  egrid('SRVC', 'SERC Virginia/Carolina', 596.3),

  // Google Cloud regions, as published by Google.
  gcp('europe-west4', 'Eemshaven, Netherlands', 236),
  gcp('europe-west1', 'Belgium', 122),
  gcp('europe-west2', 'London', 136),
  gcp('europe-west3', 'Frankfurt', 345),
  gcp('europe-west9', 'Paris', 34),
  gcp('europe-north1', 'Finland', 46),
  gcp('us-central1', 'Iowa', 430),
  gcp('us-east1', 'South Carolina', 560),
  gcp('us-east4', 'Northern Virginia', 322),
  gcp('us-west1', 'Oregon', 94),
  gcp('asia-northeast1', 'Tokyo', 459),
  gcp('asia-southeast1', 'Singapore', 369),
  gcp('asia-south1', 'Mumbai', 648),
];

/**
 * A cloud region that publishes no grid factor of its own takes the factor of the grid it sits
 * on. The mapping is by the region's published location; the row says so.
 */
function derived(id: string, name: string, baseId: string, why: string): GridIntensityFactor {
  const base = BASE.find((f) => f.id === baseId);
  if (!base) throw new Error(`region table: ${id} derives from unknown row ${baseId}`);
  return {
    ...base,
    id,
    name,
    kind: 'cloud-region',
    derivedFrom: baseId,
    note: `${why}; value of ${baseId} (${base.name}).${base.note ? ` ${base.note}` : ''}`,
  };
}

const NO_AWS = 'AWS publishes no per-region grid factor';
const NO_AZURE = 'Azure publishes no per-region grid factor';

export const REGION_INTENSITY_TABLE: readonly GridIntensityFactor[] = [
  ...BASE,
  derived('aws:us-east-1', 'AWS us-east-1 (Northern Virginia)', 'egrid:SRVC', `${NO_AWS}; Northern Virginia lies in eGRID subregion SRVC`),
  derived('aws:us-east-2', 'AWS us-east-2 (Ohio)', 'egrid:RFCW', `${NO_AWS}; Ohio lies in eGRID subregion RFCW`),
  derived('aws:us-west-1', 'AWS us-west-1 (Northern California)', 'egrid:CAMX', `${NO_AWS}; Northern California lies in eGRID subregion CAMX`),
  derived('aws:us-west-2', 'AWS us-west-2 (Oregon)', 'egrid:NWPP', `${NO_AWS}; Oregon lies in eGRID subregion NWPP`),
  derived('aws:eu-west-1', 'AWS eu-west-1 (Ireland)', 'IE', `${NO_AWS}; country average of Ireland`),
  derived('aws:eu-central-1', 'AWS eu-central-1 (Frankfurt)', 'DE', `${NO_AWS}; country average of Germany`),
  derived('aws:eu-west-3', 'AWS eu-west-3 (Paris)', 'FR', `${NO_AWS}; country average of France`),
  derived('aws:ap-south-1', 'AWS ap-south-1 (Mumbai)', 'IN', `${NO_AWS}; country average of India`),
  derived('aws:ap-southeast-2', 'AWS ap-southeast-2 (Sydney)', 'AU', `${NO_AWS}; country average of Australia`),
  derived('azure:westeurope', 'Azure westeurope (Netherlands)', 'gcp:europe-west4', `${NO_AZURE}; Netherlands grid as published by Google for its Dutch region`),
  derived('azure:northeurope', 'Azure northeurope (Ireland)', 'IE', `${NO_AZURE}; country average of Ireland`),
  derived('azure:eastus', 'Azure eastus (Virginia)', 'egrid:SRVC', `${NO_AZURE}; Virginia lies in eGRID subregion SRVC`),
  derived('azure:westus2', 'Azure westus2 (Washington)', 'egrid:NWPP', `${NO_AZURE}; Washington lies in eGRID subregion NWPP`),
  derived('azure:francecentral', 'Azure francecentral (Paris)', 'FR', `${NO_AZURE}; country average of France`),
  derived('azure:germanywestcentral', 'Azure germanywestcentral (Frankfurt)', 'DE', `${NO_AZURE}; country average of Germany`),
  derived('azure:centralindia', 'Azure centralindia (Pune)', 'IN', `${NO_AZURE}; country average of India`),
];

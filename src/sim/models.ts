// Miner models a simulated fleet draws from, with nominal figures and tuner constraints.
export interface MinerModelSpec {
  name: string;
  platform: string;
  nominalThs: number;
  defaultPowerW: number;
  minPowerW: number;
  maxPowerW: number;
  chipsPerBoard: number;
  chipType: string;
}

export const MINER_MODELS: readonly MinerModelSpec[] = [
  { name: 'Antminer S19j Pro', platform: 'PLATFORM_CVITEK_BM1_AM2', nominalThs: 104, defaultPowerW: 3068, minPowerW: 1700, maxPowerW: 3600, chipsPerBoard: 126, chipType: 'BM1362' },
  { name: 'Antminer S19 XP', platform: 'PLATFORM_STM32MP157C_II1_AM2', nominalThs: 140, defaultPowerW: 3010, minPowerW: 1800, maxPowerW: 3600, chipsPerBoard: 110, chipType: 'BM1366' },
  { name: 'Antminer S19k Pro', platform: 'PLATFORM_CVITEK_BM1_AM2', nominalThs: 120, defaultPowerW: 2760, minPowerW: 1500, maxPowerW: 3300, chipsPerBoard: 77, chipType: 'BM1366' },
  { name: 'Antminer S21', platform: 'PLATFORM_ZYNQ_BM3_AM2', nominalThs: 200, defaultPowerW: 3500, minPowerW: 2000, maxPowerW: 4200, chipsPerBoard: 108, chipType: 'BM1368' },
];

package region

import "time"

// ShipObserver is told of every shipment to a paired region and of each
// shipped change's lag (metrics.Metrics implements it). Calls come from
// the shippers and must not block.
type ShipObserver interface {
	ObserveShipment(destination string, err error)
	ObserveChangeLag(destination string, lag time.Duration)
}

// SetShipObserver makes obs receive shipments and lags; nil stops it.
func (m *Manager) SetShipObserver(obs ShipObserver) {
	m.mu.Lock()
	m.ships = obs
	m.mu.Unlock()
}

func (m *Manager) shipObserver() ShipObserver {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ships
}

// LastContact is when region last answered this node's shipper or shipped
// to it; zero when it has not since this node started.
func (m *Manager) LastContact(region string) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.contact[region]
}
